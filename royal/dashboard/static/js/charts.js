// A small line chart on a canvas: the last few minutes of one figure, redrawn on each value.
// Sharp on high-DPI screens; a gap (null) breaks the line instead of drawing a false zero.

export class Sparkline {
  constructor(canvas, { capacity = 90, color = "#4aa3ff" } = {}) {
    this.canvas = canvas;
    this.capacity = capacity;
    this.color = color;
    this.values = [];
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  push(value) {
    this.values.push(Number.isFinite(value) ? value : null);
    if (this.values.length > this.capacity) this.values.splice(0, this.values.length - this.capacity);
    this.draw();
  }

  draw() {
    const { canvas } = this;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);

    const known = this.values.filter((value) => value !== null);
    if (!known.length) return;
    const top = Math.max(1, ...known) * 1.15;
    const step = width / Math.max(1, this.capacity - 1);
    const offset = this.capacity - this.values.length; // newest value at the right edge
    const x = (index) => (offset + index) * step;
    const y = (value) => height - 2 - (value / top) * (height - 4);

    const segments = [[]];
    this.values.forEach((value, index) => {
      if (value === null) segments.push([]);
      else segments.at(-1).push([x(index), y(value)]);
    });
    for (const points of segments.filter((segment) => segment.length)) {
      context.beginPath();
      points.forEach(([px, py], index) => (index ? context.lineTo(px, py) : context.moveTo(px, py)));
      context.strokeStyle = this.color;
      context.lineWidth = 1.5;
      context.lineJoin = "round";
      context.stroke();
      context.lineTo(points.at(-1)[0], height);
      context.lineTo(points[0][0], height);
      context.closePath();
      context.globalAlpha = 0.15;
      context.fillStyle = this.color;
      context.fill();
      context.globalAlpha = 1;
    }
    const last = this.values.at(-1);
    if (last !== null) {
      context.beginPath();
      context.arc(x(this.values.length - 1) - 2, y(last), 2.5, 0, Math.PI * 2);
      context.fillStyle = this.color;
      context.fill();
    }
  }
}
