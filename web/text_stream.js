// Turns generated token ids into text deltas: decodes the whole reply each time and emits what is
// new, holding back a trailing partial UTF-8 character and any tail that may begin a stop string.

export class TextStream {
  constructor(tokenizer, stop = []) {
    this.tokenizer = tokenizer;
    this.stop = stop;
    this.ids = [];
    this.emitted = 0; // characters of the reply text already handed out
    this.text = "";
    this.stopped = false;
  }

  /** Add a token; returns the text that is now safe to show (possibly ""). */
  push(id) {
    this.ids.push(id);
    this.text = this.tokenizer.decode(this.ids);
    for (const s of this.stop) {
      const at = this.text.indexOf(s);
      if (at >= 0) {
        this.text = this.text.slice(0, at);
        this.stopped = true;
      }
    }
    let safe = this.text.length;
    if (!this.stopped) {
      if (this.text.endsWith("\uFFFD")) safe -= 1; // an incomplete multi-byte character
      for (const s of this.stop) {
        for (let k = Math.min(s.length - 1, safe); k > 0; k--) {
          if (this.text.slice(safe - k, safe) === s.slice(0, k)) {
            safe -= k;
            break;
          }
        }
      }
    }
    return this.take(Math.max(safe, this.emitted));
  }

  /** Everything not yet emitted (at the end of generation). */
  flush() {
    return this.take(this.text.length);
  }

  take(upTo) {
    const delta = this.text.slice(this.emitted, upTo);
    this.emitted = Math.max(this.emitted, upTo);
    return delta;
  }
}
