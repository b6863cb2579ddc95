// Live machine load: canvas charts fed by /api/system/history and the /api/system/live feed.
import { api } from "./api.js";
import { el } from "./dom.js";
import { feed } from "./page.js";

class Chart {
  constructor(id, title, unit, series) {
    this.canvas = el("canvas", { id, "data-samples": "0", width: 600, height: 160 });
    this.value = el("span", {}, "–");
    this.node = el("div", { class: "chart" }, el("h3", {}, title, this.value), this.canvas);
    this.unit = unit; this.series = series; this.points = [];
  }
  push(values, label) {
    this.points.push(values); if (this.points.length > 300) this.points.shift();
    this.canvas.dataset.samples = String(Number(this.canvas.dataset.samples) + 1);
    this.value.textContent = label; this.draw();
  }
  draw() {
    const c = this.canvas, g = c.getContext("2d"), w = c.width, h = c.height;
    g.clearRect(0, 0, w, h);
    const max = Math.max(this.unit === "%" ? 100 : 1, ...this.points.flat());
    g.strokeStyle = "#e3e6ea"; g.lineWidth = 1;
    for (let i = 1; i < 4; i++) { g.beginPath(); g.moveTo(0, (h * i) / 4); g.lineTo(w, (h * i) / 4); g.stroke(); }
    const colors = ["#2457d6", "#1f8a4c", "#b86e00"];
    this.series.forEach((_, s) => {
      g.strokeStyle = colors[s % colors.length]; g.lineWidth = 2; g.beginPath();
      this.points.forEach((p, i) => {
        const x = (w * i) / 299, y = h - (h * p[s]) / max;
        i ? g.lineTo(x, y) : g.moveTo(x, y);
      });
      g.stroke();
    });
  }
}

export function loadCharts() {
  const cpu = new Chart("chart-cpu", "CPU", "%", ["cpu"]);
  const gpu = new Chart("chart-gpu", "GPU", "%", ["util", "enc", "dec"]);
  const disk = new Chart("chart-disk", "Disk (read / write)", "MB/s", ["r", "w"]);
  const net = new Chart("chart-net", "Network (rx / tx)", "Mbit/s", ["rx", "tx"]);
  const add = (s) => {
    cpu.push([s.cpu.total_percent], s.cpu.total_percent.toFixed(0) + " %");
    if (s.gpus.length) {
      const g0 = s.gpus[0];
      gpu.push([g0.utilization_percent, g0.encoder_percent ?? 0, g0.decoder_percent ?? 0], `${g0.utilization_percent} % · enc ${g0.encoder_percent ?? "–"} · dec ${g0.decoder_percent ?? "–"}`);
    } else {
      gpu.push([0, 0, 0], s.gpu_status || "no GPU detected");
    }
    const r = s.disks.reduce((a, d) => a + d.read_bytes_per_s, 0) / 1e6, w = s.disks.reduce((a, d) => a + d.write_bytes_per_s, 0) / 1e6;
    disk.push([r, w], `${r.toFixed(1)} / ${w.toFixed(1)} MB/s`);
    const ext = s.networks.filter((n) => n.interface !== "lo");
    const rx = ext.reduce((a, n) => a + n.rx_bytes_per_s, 0) * 8 / 1e6, tx = ext.reduce((a, n) => a + n.tx_bytes_per_s, 0) * 8 / 1e6;
    net.push([rx, tx], `${rx.toFixed(1)} / ${tx.toFixed(1)} Mbit/s`);
  };
  api("GET", "/api/system/history").then((h) => h.forEach(add)).catch(() => {});
  feed("/api/system/live").addEventListener("sample", (ev) => add(JSON.parse(ev.data)));
  return el("section", {}, el("h2", {}, "Machine load"), el("div", { class: "charts" }, cpu.node, gpu.node, disk.node, net.node));
}
