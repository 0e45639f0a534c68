// `{{name}}`: a pilot-host plugin whose stat handler `{{name}}` restarts a process whose resident
// memory is above `config.max_rss_mib` (default 512).

import * as pilot from './pilot_sdk.js';

class {{camel}} extends pilot.Plugin {
  constructor() {
    super();
    this.maxRssMib = 512;
  }

  describe() {
    return { name: '{{name}}', version: '0.1.0', statHandlers: ['{{name}}'] };
  }

  init(config) {
    this.maxRssMib = config.intOr('max_rss_mib', 512);
  }

  stats(handler, stats) {
    return stats
      .filter((s) => Number(s.rssBytes >> 20n) > this.maxRssMib)
      .map((s) => pilot.restart(s.name, `RSS ${s.rssBytes >> 20n} MiB is above ${this.maxRssMib} MiB`));
  }
}

export const plugin = pilot.exportPlugin({{camel}});
