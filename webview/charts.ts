/** chart.js set-up: only the pieces used, theme colours from VS Code's CSS variables, no eval. */
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Filler,
  Legend,
  LineController,
  LineElement,
  LinearScale,
  LogarithmicScale,
  PointElement,
  Tooltip,
  type ChartConfiguration,
  type Plugin,
} from 'chart.js';
import { h, themeColor } from './dom';

// Filler: the band between two lines (the steps panel's bf16 prediction).
Chart.register(LineController, LineElement, PointElement, BarController, BarElement, LinearScale, LogarithmicScale, CategoryScale, Filler, Tooltip, Legend);

const live = new Set<Chart>();

export function destroyCharts(): void {
  for (const c of live) c.destroy();
  live.clear();
}

export function palette(): string[] {
  return [
    themeColor('--vscode-charts-blue', '#3794ff'),
    themeColor('--vscode-charts-orange', '#d18616'),
    themeColor('--vscode-charts-green', '#89d185'),
    themeColor('--vscode-charts-purple', '#b180d7'),
    themeColor('--vscode-charts-red', '#f14c4c'),
    themeColor('--vscode-charts-yellow', '#cca700'),
  ];
}

/** A theme colour at some opacity, for a canvas (which reads neither var() nor color-mix()). */
export function withAlpha(color: string, alpha: number): string {
  const a = Math.round(Math.max(0, Math.min(1, alpha)) * 255)
    .toString(16)
    .padStart(2, '0');
  if (/^#[0-9a-f]{6}$/i.test(color)) return `${color}${a}`;
  if (/^#[0-9a-f]{3}$/i.test(color)) return `#${[...color.slice(1)].map((c) => c + c).join('')}${a}`;
  const m = /^rgba?\(\s*([\d.]+)[,\s]+([\d.]+)[,\s]+([\d.]+)/.exec(color);
  return m ? `rgba(${m[1]}, ${m[2]}, ${m[3]}, ${alpha})` : color;
}

function applyTheme(): void {
  const fg = themeColor('--vscode-foreground', '#cccccc');
  Chart.defaults.color = fg;
  Chart.defaults.borderColor = themeColor('--vscode-editorWidget-border', 'rgba(128,128,128,0.35)');
  Chart.defaults.font.family = themeColor('--vscode-font-family', 'sans-serif');
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
}

/** A chart in a sized box; `label` names it for screen readers. */
export function chart(label: string, config: ChartConfiguration): HTMLElement {
  applyTheme();
  const canvas = h('canvas', { role: 'img', 'aria-label': label });
  const box = h('div', { class: 'chart' }, canvas);
  // chart.js needs the canvas attached to measure it: create on the next frame.
  requestAnimationFrame(() => {
    if (!canvas.isConnected) return;
    live.add(new Chart(canvas, config));
  });
  return box;
}

/** Vertical lines at x positions (attention-head boundaries), drawn over the data. */
export function verticalLines(xs: number[], color: string): Plugin {
  return {
    id: 'gatescopeVerticalLines',
    afterDatasetsDraw(c) {
      const x = c.scales.x;
      const area = c.chartArea;
      if (!x || !area) return;
      const ctx = c.ctx;
      ctx.save();
      ctx.strokeStyle = color;
      ctx.setLineDash([4, 3]);
      ctx.lineWidth = 1;
      for (const v of xs) {
        const px = x.getPixelForValue(v);
        if (px < area.left || px > area.right) continue;
        ctx.beginPath();
        ctx.moveTo(px, area.top);
        ctx.lineTo(px, area.bottom);
        ctx.stroke();
      }
      ctx.restore();
    },
  };
}
