/**
 * Line charts like the paper's figures, written as SVG by hand (no plotting library) and turned into PNG by
 * rsvg-convert (Debian's librsvg2-bin, which `npm run bench`'s setup step, scripts/test-setup.sh, installs;
 * without it, SVG only).
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Chart {
  /** File name without extension. */
  file: string;
  title: string;
  x: string;
  y: string;
  /** A line each; a colour of its own unless given, dashed if asked (e.g. the one-worker line of a server). */
  series: { name: string; points: (readonly [number, number])[]; colour?: string; dashed?: boolean }[];
}

const COLOURS = ['#c0392b', '#2c3e50', '#27ae60', '#8e44ad', '#d35400', '#e91e63', '#7f8c8d', '#2980b9'];
const W = 820;
const H = 400;
/** The legend sits in the right margin, clear of the lines. */
const M = { left: 70, right: 220, top: 40, bottom: 55 };

/** A round step for about `count` ticks up to `max`. */
function tickStep(max: number, count = 5): number {
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw || 1));
  return ([1, 2, 5, 10].find((m) => m * power >= raw) ?? 10) * power;
}

const xml = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;');

export function svg(chart: Chart): string {
  const points = chart.series.flatMap((s) => s.points);
  const xMax = Math.max(1, ...points.map(([x]) => x));
  const xMin = Math.min(xMax, ...points.map(([x]) => x));
  const yStep = tickStep(Math.max(...points.map(([, y]) => y), 1e-9));
  const yMax = Math.ceil(Math.max(...points.map(([, y]) => y), 1e-9) / yStep) * yStep;
  const px = (x: number) => M.left + ((x - xMin) / Math.max(1, xMax - xMin)) * (W - M.left - M.right);
  const py = (y: number) => H - M.bottom - (y / yMax) * (H - M.top - M.bottom);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${xml(chart.title)}</text>`,
  ];
  for (let y = 0; y <= yMax + 1e-9; y += yStep) {
    parts.push(
      `<line x1="${M.left}" x2="${W - M.right}" y1="${py(y)}" y2="${py(y)}" stroke="#ddd"/>`,
      `<text x="${M.left - 8}" y="${py(y) + 4}" text-anchor="end">${Number(y.toPrecision(6))}</text>`,
    );
  }
  // The measured x values (client counts, workers) when they are few; round steps otherwise.
  const xs = [...new Set(points.map(([x]) => x))].sort((a, b) => a - b);
  const xStep = tickStep(xMax - xMin || 1, 8);
  const xTicks =
    xs.length <= 12
      ? xs
      : Array.from({ length: Math.floor((xMax - xMin) / xStep) + 1 }, (_, i) => xMin + i * xStep);
  for (const x of xTicks)
    parts.push(
      `<text x="${px(x)}" y="${H - M.bottom + 18}" text-anchor="middle">${Number(x.toPrecision(6))}</text>`,
    );
  parts.push(
    `<line x1="${M.left}" x2="${W - M.right}" y1="${H - M.bottom}" y2="${H - M.bottom}" stroke="black"/>`,
    `<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${H - M.bottom}" stroke="black"/>`,
    `<text x="${(M.left + W - M.right) / 2}" y="${H - 12}" text-anchor="middle">${xml(chart.x)}</text>`,
    `<text x="16" y="${(M.top + H - M.bottom) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(M.top + H - M.bottom) / 2})">${xml(chart.y)}</text>`,
  );
  chart.series.forEach((series, i) => {
    const colour = series.colour ?? COLOURS[i % COLOURS.length];
    const dash = series.dashed ? ' stroke-dasharray="6 4"' : '';
    const path = series.points.map(([x, y]) => `${px(x)},${py(y)}`).join(' ');
    parts.push(`<polyline points="${path}" fill="none" stroke="${colour}" stroke-width="2"${dash}/>`);
    for (const [x, y] of series.points)
      parts.push(`<circle cx="${px(x)}" cy="${py(y)}" r="3" fill="${colour}"/>`);
    parts.push(
      `<line x1="${W - M.right + 12}" x2="${W - M.right + 36}" y1="${M.top + 8 + i * 18}" y2="${M.top + 8 + i * 18}" stroke="${colour}" stroke-width="2"${dash}/>`,
      `<text x="${W - M.right + 42}" y="${M.top + 12 + i * 18}">${xml(series.name)}</text>`,
    );
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/** rsvg-convert's path, or null. Never installed here: tools are installed by scripts/test-setup.sh only. */
async function converter(): Promise<string | null> {
  return run('sh', ['-c', 'command -v rsvg-convert']).then(
    ({ stdout }) => stdout.trim() || null,
    () => null,
  );
}

/** Writes each chart as SVG and, if rsvg-convert is there, PNG; returns the files written. */
export async function renderCharts(dir: string, charts: Chart[]): Promise<string[]> {
  const written: string[] = [];
  const rsvg = await converter();
  if (!rsvg)
    console.error(
      'rsvg-convert is missing (Debian: librsvg2-bin; scripts/test-setup.sh installs it as root): SVG charts only',
    );
  for (const chart of charts) {
    const file = join(dir, `${chart.file}.svg`);
    await writeFile(file, svg(chart));
    written.push(file);
    if (rsvg) {
      await run(rsvg, ['-o', join(dir, `${chart.file}.png`), file]);
      written.push(join(dir, `${chart.file}.png`));
    }
  }
  return written;
}
