// `hostile-js`: a pilot-host test plugin in JavaScript that misbehaves on purpose.
//
// Ready strategies: `js-alloc` (allocates and keeps 1 MiB buffers until memory runs out: the memory cap
// must stop it), `js-ok` (ready at once, the control). Stat handler `js-noop` (no actions; the benchmarks'
// smallest call).

import * as pilot from './pilot_sdk.js';

class HostileJs extends pilot.Plugin {
  describe() {
    return {
      name: 'hostile-js',
      version: '0.1.0',
      readyStrategies: ['js-alloc', 'js-ok'],
      statHandlers: ['js-noop'],
    };
  }

  readyCheck(strategy) {
    if (strategy === 'js-ok') return pilot.READY;
    const hoard = [];
    for (;;) hoard.push(new Uint8Array(1 << 20));
  }

  stats() {
    return [];
  }
}

export const plugin = pilot.exportPlugin(HostileJs);
