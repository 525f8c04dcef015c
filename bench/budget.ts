/**
 * An upload's CPU budget: what receiving the bytes costs nginx, plus the digests Repoman computes (which
 * nginx does not), with 30 % to spare. And the throughput ceiling that budget implies when the clients and the
 * server share the cores: with C cores busy, a rate R costs R x (client's CPU per byte + server's), so
 * R <= C / (k + s); Repoman spending its whole budget B where nginx spends s_n, against the same clients (k),
 * reaches at most (k + s_n) / (k + B) of nginx's rate.
 */

export const BUDGET = 1.3;

/** What a step of the throughput benchmark measured (throughput.json). */
export interface Measure {
  /** Bytes moved (every client's). */
  bytes: number;
  /** The server's CPU seconds (all its processes). */
  user: number;
  system: number;
  /** The clients' CPU seconds (every curl). */
  clientUser: number;
  clientSystem: number;
}

const gb = (m: Measure) => m.bytes / 1e9;
export const cpuPerGb = (m: Measure) => (m.user + m.system) / gb(m);
export const systemPerGb = (m: Measure) => m.system / gb(m);
export const clientCpuPerGb = (m: Measure) => (m.clientUser + m.clientSystem) / gb(m);

/** Repoman's CPU per GB over its budget (nginx's CPU per GB for the same step plus the digests'): ≤ 1.3 is met. */
export function budgetRatio(ours: Measure, nginx: Measure, digests: number): number {
  return cpuPerGb(ours) / (cpuPerGb(nginx) + digests);
}

/** The highest rate ratio Repoman/nginx that spending exactly the budget allows on shared cores. */
export function ceiling(nginx: Measure, digests: number): number {
  const k = clientCpuPerGb(nginx);
  const s = cpuPerGb(nginx);
  return (k + s) / (k + BUDGET * (s + digests));
}
