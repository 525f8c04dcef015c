/** Test images made with the real qemu-img. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * `qemu-img` with `args`. LUKS creation times its key derivation by the thread's CPU clock, whose ticks are
 * coarse on some virtual machines, and then fails with "Unable to get accurate CPU usage" now and then: that,
 * and only that, is tried again (up to ten times).
 */
export async function qemuImg(args: string[], options: { cwd?: string } = {}) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run('qemu-img', args, options);
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr ?? '';
      if (attempt >= 10 || !/Unable to get accurate CPU usage/.test(stderr)) throw error;
    }
  }
}

/** A 1 MiB qcow2 encrypted with LUKS (the secret is not kept). */
export async function encryptedQcow2(path: string): Promise<void> {
  await qemuImg([
    'create',
    '-q',
    '-f',
    'qcow2',
    '--object',
    'secret,id=sec0,data=not-a-secret',
    '-o',
    'encrypt.format=luks,encrypt.key-secret=sec0',
    path,
    '1M',
  ]);
}
