// stream.js: the server's push (/api/stream, server-sent events). Parses each message and
// hands it on; says whether the stream is open or lost, and reconnects by itself (the
// browser's own retry, or a new EventSource with a growing delay when it gave up).

export class Stream {
  constructor(url, { onMessage, onState }) {
    this.url = url;
    this.onMessage = onMessage;
    this.onState = onState;
    this.delay = 1000;
    this.source = null;
    this.timer = 0;
    this.received = 0;
  }

  open() {
    clearTimeout(this.timer);
    this.source?.close();
    const src = new EventSource(this.url);
    this.source = src;
    src.onopen = () => {
      this.delay = 1000;
      this.onState("open");
    };
    src.onmessage = (e) => {
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        console.warn("classroom stream: a message that is not JSON", e.data);
        return;
      }
      this.received += 1;
      this.onMessage(msg);
    };
    src.onerror = () => {
      if (this.source !== src) return;
      this.onState("lost");
      if (src.readyState === EventSource.CLOSED) {
        // the browser gave up (the server refused or is gone): try again ourselves
        this.timer = setTimeout(() => this.open(), this.delay);
        this.delay = Math.min(this.delay * 2, 8000);
      }
    };
  }

  close() {
    clearTimeout(this.timer);
    this.source?.close();
    this.source = null;
  }
}
