// `cpu-guard`: a pilot-host plugin whose stat handler `cpu-guard` restarts a process whose CPU use
// stays above a limit for several samples in a row (a spinning worker, a busy loop after a bug).
//
//     stats_interval_sec: 1
//     processes:
//       - { name: worker, path: ./worker, stat_handlers: [cpu-guard] }
//     plugins:
//       cpu-guard: { config: { max_cpu_percent: 90, samples: 5 } }
//
// Config: `max_cpu_percent` (default 90, in percent of one core), `samples` (default 3: how many
// samples in a row must be above the limit). A sample at or below the limit starts the count over,
// and so does a restart (its uptime drops). The count lives in the instance: if the instance is
// discarded the count starts over, which can only make a restart later, never earlier.

import * as pilot from './pilot_sdk.js';

class CpuGuard extends pilot.Plugin {
  constructor() {
    super();
    this.limit = 90;
    this.samples = 3;
    // process name -> { above: samples in a row above the limit, pid }
    this.seen = new Map();
  }

  describe() {
    return { name: 'cpu-guard', version: '0.1.0', statHandlers: ['cpu-guard'] };
  }

  init(config) {
    this.limit = config.numberOr('max_cpu_percent', 90);
    this.samples = config.intOr('samples', 3);
    if (this.limit <= 0) {
      throw new pilot.InvalidConfig(`\`config.max_cpu_percent\` must be above 0, got \`${this.limit}\``);
    }
    if (this.samples < 1) {
      throw new pilot.InvalidConfig(`\`config.samples\` must be at least 1, got \`${this.samples}\``);
    }
  }

  stats(handler, stats) {
    const actions = [];
    for (const s of stats) {
      const before = this.seen.get(s.name);
      // A new pid is a new run: its count starts over.
      const above = s.cpuPercent > this.limit && before?.pid === s.pid ? before.above + 1
        : s.cpuPercent > this.limit ? 1 : 0;
      if (above >= this.samples) {
        actions.push(pilot.restart(s.name,
          `CPU above ${this.limit}% for ${above} samples in a row (now ${s.cpuPercent.toFixed(1)}%)`));
        this.seen.delete(s.name);
        continue;
      }
      this.seen.set(s.name, { above, pid: s.pid });
    }
    return actions;
  }
}

export const plugin = pilot.exportPlugin(CpuGuard);
