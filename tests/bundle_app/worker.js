// The app's Worker: webrt/worker makes it host the engine that createWorkerEngine talks to.
import "webrt/worker";
