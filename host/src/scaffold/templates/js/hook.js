// `{{name}}`: a pilot-host plugin whose lifecycle hook `{{name}}` logs every event of the processes
// that name it.

import * as pilot from './pilot_sdk.js';

class {{camel}} extends pilot.Plugin {
  describe() {
    return { name: '{{name}}', version: '0.1.0', lifecycleHooks: ['{{name}}'] };
  }

  lifecycle(hook, event, process, exit) {
    let how = '';
    if (exit?.code !== undefined) how = `, exit code ${exit.code}`;
    else if (exit?.signal !== undefined) how = `, signal ${exit.signal}`;
    pilot.log.info(`${event} of \`${process.name}\` (pid ${process.pid}${how})`);
  }
}

export const plugin = pilot.exportPlugin({{camel}});
