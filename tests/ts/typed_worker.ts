// The worker side of typed_example.ts: the module a Worker runs to host an engine.
import "webrt/worker";
