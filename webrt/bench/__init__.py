"""`webrt bench`: webrt next to onnxruntime-web and transformers.js in one browser run."""
