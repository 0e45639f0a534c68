// `{{name}}`: a pilot-host plugin whose ready strategy `{{name}}` says a process is ready once the
// process has been restarted at least `ready_params.min_restarts` times (default 0: at once).
//
// JavaScript plugins have no file or socket access (componentize-js builds them without WASI
// filesystem or network bindings): decide from the process info, the params and the config.

import * as pilot from './pilot_sdk.js';

class {{camel}} extends pilot.Plugin {
  describe() {
    return { name: '{{name}}', version: '0.1.0', readyStrategies: ['{{name}}'] };
  }

  readyCheck(strategy, process, params) {
    const wanted = params.intOr('min_restarts', 0);
    if (process.restartCount >= wanted) return pilot.READY;
    return pilot.notYet(`${process.restartCount} of ${wanted} restarts`);
  }
}

export const plugin = pilot.exportPlugin({{camel}});
