/**
 * Converting an image with `qemu-img convert`, run as a confined child process. The inspector has refused,
 * at upload, every image that names another file; here are the second and third locks:
 * - the source format is forced (never probed) and backing files are switched off in the source's options;
 * - before converting, `qemu-img info` says which files qemu would open: anything but the source itself (a
 *   vmdk extent, a qcow2 data file, a backing file) stops the job;
 * - CPU time, address space and the size of any file it writes are limited, it runs at low priority in a
 *   temporary directory with only PATH and LC_ALL in its environment, and it is killed if the job is
 *   cancelled.
 */
import { spawn } from 'node:child_process';
import type { VariantFormat } from '@repoman/core';

export interface ConvertLimits {
  /** CPU seconds the conversion may use. */
  cpuSeconds: number;
  /** Address space it may map, in bytes. */
  memoryBytes: number;
  /** The largest file it may write, in bytes. */
  outputBytes: number;
}

export interface ConvertRequest {
  qemuImg: string;
  source: string;
  /** What the inspector found the source to be (raw for ISO 9660). */
  sourceFormat: string;
  target: string;
  format: VariantFormat;
  compress: boolean;
  /** The temporary directory it runs in. */
  cwd: string;
  limits: ConvertLimits;
  onProgress?: (fraction: number) => void;
  signal?: AbortSignal;
}

/** Formats qemu-img reads that the inspector names (its `vpc` is qemu's name for VHD too). */
export const CONVERTIBLE = new Set(['raw', 'qcow2', 'vmdk', 'vpc', 'vhdx', 'vdi', 'iso']);

export class ConversionError extends Error {
  override name = 'ConversionError';
}

/** The source as qemu opens it: a json: name that says there is no backing file, whatever the header says. */
function sourceSpec(request: Pick<ConvertRequest, 'source' | 'sourceFormat'>) {
  const driver = request.sourceFormat === 'iso' ? 'raw' : request.sourceFormat;
  const spec = `json:${JSON.stringify({
    driver,
    file: { driver: 'file', filename: request.source },
    backing: null,
  })}`;
  return { driver, spec };
}

/** The arguments after `qemu-img`: exposed for the documentation and the tests. */
export function convertArguments(request: Omit<ConvertRequest, 'qemuImg' | 'cwd' | 'limits'>): string[] {
  const { driver, spec: source } = sourceSpec(request);
  const output = [
    '-O',
    request.format,
    ...(request.format === 'vmdk' ? ['-o', 'subformat=streamOptimized'] : []),
    ...(request.compress ? ['-c'] : []),
  ];
  return ['convert', '-p', '-f', driver, ...output, source, request.target];
}

interface QemuInfo {
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'format-specific'?: { type?: string; data?: { 'data-file'?: string; extents?: { filename?: string }[] } };
}

/**
 * Asks qemu-img which files it would read for the source, and refuses anything but the source itself: a
 * ConversionError names the file.
 */
export async function preflight(request: ConvertRequest): Promise<void> {
  const { spec } = sourceSpec(request);
  const out = await confined(request, ['info', '--output=json', spec]);
  let info: QemuInfo;
  try {
    info = JSON.parse(out) as QemuInfo;
  } catch {
    throw new ConversionError('qemu-img info gave no answer it could read');
  }
  const others = [
    info['backing-filename'],
    info['full-backing-filename'],
    info['format-specific']?.data?.['data-file'],
    ...(info['format-specific']?.data?.extents ?? []).map((e) => e.filename),
  ].filter((name): name is string => name !== undefined && name !== request.source);
  if (others.length > 0)
    throw new ConversionError(`Refused: qemu-img would read ${others.map((n) => `'${n}'`).join(', ')}`);
}

/** Runs the conversion; rejects with a ConversionError carrying qemu-img's own message. */
export async function convert(request: ConvertRequest): Promise<void> {
  await preflight(request);
  await confined(request, convertArguments(request));
}

/** Runs qemu-img with the limits; resolves with what it wrote on stdout (progress aside). */
function confined(request: ConvertRequest, args: string[]): Promise<string> {
  const { cpuSeconds, memoryBytes, outputBytes } = request.limits;
  const progress = args[0] === 'convert';
  return new Promise((resolve, reject) => {
    // ulimit applies to the shell, then exec hands the limits to qemu-img (-f counts 512-byte blocks).
    const child = spawn(
      '/bin/sh',
      [
        '-c',
        'ulimit -t "$1" && ulimit -v "$2" && ulimit -f "$3" && shift 3 && exec nice -n 10 "$@"',
        'sh',
        String(cpuSeconds),
        String(Math.ceil(memoryBytes / 1024)),
        String(Math.ceil(outputBytes / 512) + 1),
        request.qemuImg,
        ...args,
      ],
      {
        cwd: request.cwd,
        env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
        stdio: ['ignore', 'pipe', 'pipe'],
        ...(request.signal ? { signal: request.signal } : {}),
      },
    );
    let errors = '';
    let pending = '';
    let output = '';
    child.stdout.setEncoding('latin1').on('data', (text: string) => {
      if (!progress) {
        if (output.length < 1024 * 1024) output += text;
        return;
      }
      // -p writes "    (12.34/100%)\r" as it goes.
      pending += text;
      const matches = [...pending.matchAll(/\((\d+(?:\.\d+)?)\/100%\)/g)];
      const last = matches.at(-1);
      if (last) {
        request.onProgress?.(Math.min(1, Number(last[1]) / 100));
        pending = pending.slice((last.index ?? 0) + last[0].length);
      }
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      if (errors.length < 4096) errors += text;
    });
    child.on('error', (error) =>
      reject(
        (error as NodeJS.ErrnoException).name === 'AbortError'
          ? new ConversionError('The conversion was cancelled')
          : new ConversionError(`qemu-img could not run: ${error.message}`),
      ),
    );
    child.on('close', (code, signal) => {
      if (code === 0) return resolve(output);
      const message =
        errors
          .trim()
          .split('\n')
          .at(-1)
          ?.replace(/^qemu-img: /, '') ?? '';
      const stopped: Partial<Record<NodeJS.Signals, string>> = {
        SIGXCPU: `The conversion used its ${cpuSeconds} s of CPU time and was stopped`,
        SIGXFSZ: `The conversion wrote more than the limit of ${outputBytes} bytes and was stopped`,
        SIGKILL: 'The conversion was stopped',
      };
      // Past the file size limit, qemu-img either dies of SIGXFSZ or sees EFBIG, as it ignores the signal.
      const reason = signal ? stopped[signal] : /File too large/.test(errors) ? stopped.SIGXFSZ : undefined;
      if (reason) return reject(new ConversionError(reason));
      reject(new ConversionError(message || `qemu-img failed (exit ${code ?? signal})`));
    });
  });
}

/** Whether qemu-img can be run: its version line, or null. */
export function qemuImgVersion(qemuImg: string): Promise<string | null> {
  return new Promise((resolve) => {
    const child = spawn(qemuImg, ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      out += text;
    });
    child.on('error', () => resolve(null));
    child.on('close', (code) => resolve(code === 0 ? (out.split('\n')[0] ?? '').trim() : null));
  });
}
