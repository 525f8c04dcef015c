/**
 * Converting an image with `qemu-img convert`, run as a confined child process: the source format is forced
 * (never probed), backing files are switched off in the source's options (a qcow2 that names one is refused
 * at upload; this is the second lock), CPU time and address space are limited, the process runs at low
 * priority in a temporary directory with an empty environment, and it is killed if the job is cancelled.
 */
import { spawn } from 'node:child_process';
import type { VariantFormat } from '@repoman/core';

export interface ConvertLimits {
  /** CPU seconds the conversion may use. */
  cpuSeconds: number;
  /** Address space it may map, in bytes. */
  memoryBytes: number;
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

/** The arguments after `qemu-img`: exposed for the documentation and the tests. */
export function convertArguments(request: Omit<ConvertRequest, 'qemuImg' | 'cwd' | 'limits'>): string[] {
  const driver = request.sourceFormat === 'iso' ? 'raw' : request.sourceFormat;
  // A json: source names the file itself and says there is no backing file, whatever the header says.
  const source = `json:${JSON.stringify({
    driver,
    file: { driver: 'file', filename: request.source },
    backing: null,
  })}`;
  const output = [
    '-O',
    request.format,
    ...(request.format === 'vmdk' ? ['-o', 'subformat=streamOptimized'] : []),
    ...(request.compress ? ['-c'] : []),
  ];
  return ['convert', '-p', '-f', driver, ...output, source, request.target];
}

/** Runs the conversion; rejects with a ConversionError carrying qemu-img's own message. */
export function convert(request: ConvertRequest): Promise<void> {
  const { cpuSeconds, memoryBytes } = request.limits;
  const args = convertArguments(request);
  return new Promise((resolve, reject) => {
    // ulimit applies to the shell, then exec hands the limits to qemu-img.
    const child = spawn(
      '/bin/sh',
      [
        '-c',
        'ulimit -t "$1" && ulimit -v "$2" && shift 2 && exec nice -n 10 "$@"',
        'sh',
        String(cpuSeconds),
        String(Math.ceil(memoryBytes / 1024)),
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
    child.stdout.setEncoding('latin1').on('data', (text: string) => {
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
      if (code === 0) return resolve();
      const message =
        errors
          .trim()
          .split('\n')
          .at(-1)
          ?.replace(/^qemu-img: /, '') ?? '';
      if (signal === 'SIGXCPU' || signal === 'SIGKILL')
        return reject(
          new ConversionError(
            signal === 'SIGXCPU'
              ? `The conversion used its ${cpuSeconds} s of CPU time and was stopped`
              : 'The conversion was stopped',
          ),
        );
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
