/**
 * What a process costs, read from Linux's /proc: CPU time as the kernel charged it (not wall time), and
 * resident memory. utime+stime in /proc/<pid>/stat are whole clock ticks (10 ms at USER_HZ 100), so the
 * scenarios run long enough for hundreds of ticks; schedstat (nanoseconds, summed over the process's
 * threads) is kept next to it as a check on that rounding.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';

/** USER_HZ; 100 on every Linux architecture Node runs on. */
const TICKS_PER_SECOND = 100;

export interface CpuSample {
  /** utime+stime from /proc/<pid>/stat, in microseconds (whole ticks). */
  readonly statUs: number;
  /** Sum over threads of /proc/<pid>/task/<tid>/schedstat's run time, in microseconds; NaN if unreadable. */
  readonly schedUs: number;
}

export function cpuOf(pid: number): CpuSample {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  let schedNs = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      schedNs += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    }
  } catch {
    schedNs = Number.NaN;
  }
  return { statUs: (ticks * 1e6) / TICKS_PER_SECOND, schedUs: schedNs / 1000 };
}

export function cpuDelta(after: CpuSample, before: CpuSample): CpuSample {
  return { statUs: after.statUs - before.statUs, schedUs: after.schedUs - before.schedUs };
}

function statusKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return m ? Number(m[1]) : Number.NaN;
}

export function rssKb(pid: number): number {
  return statusKb(pid, 'VmRSS');
}

/**
 * Peak RSS since the last resetPeak(). Writing 5 to clear_refs resets VmHWM (Linux 4.0+); where that is
 * not allowed the caller's own samples of VmRSS are the fallback.
 */
export function peakKb(pid: number): number {
  return statusKb(pid, 'VmHWM');
}

export function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** Samples VmRSS of some processes on an interval; `stop()` returns each one's maximum and the series. */
export function sampleRss(pids: readonly number[], everyMs: number): { stop(): { max: number[]; series: number[][] } } {
  const series: number[][] = pids.map(() => []);
  const take = (): void => {
    pids.forEach((pid, i) => {
      try {
        series[i]?.push(rssKb(pid));
      } catch {
        // the process is gone; its series just ends
      }
    });
  };
  take();
  const timer = setInterval(take, everyMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      return { max: series.map((s) => Math.max(0, ...s)), series };
    },
  };
}
