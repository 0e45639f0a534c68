// `{{name}}`: a pilot-host control plugin. `GET /plugins/{{name}}/` answers the processes and their
// states as JSON; every exit is logged. Reading the processes needs `grants: { control: [read] }` in
// the manifest; without it the answer is 403 naming the grant.
import * as pilot from './pilot_control.js';

class {{camel}} extends pilot.ControlPlugin {
  describe() {
    return { name: '{{name}}', version: '0.1.0' };
  }

  init(config) {
    return { events: ['exited'] };
  }

  onEvent(event) {
    const { code } = event.data;
    if (code === null || code === undefined) pilot.log.warn(`\`${event.process}\` was ended by a signal`);
    else if (code === 0) pilot.log.info(`\`${event.process}\` exited with status 0`);
    else pilot.log.warn(`\`${event.process}\` exited with status ${code}`);
  }

  handle(request) {
    if (request.method !== 'GET' || request.path !== '/') {
      return pilot.text(404, `no route for ${request.method} ${request.path}; try GET /\n`);
    }
    const processes = pilot.control.processes().map((p) => ({
      name: p.name, phase: p.phase, up: p.up, restarts: p.restarts, pid: p.pid ?? null,
      last_exit: p.lastExit ?? null,
    }));
    return pilot.json(200, { processes });
  }
}

const exported = pilot.exportControl({{camel}});
export const controlPlugin = exported.controlPlugin;
export const incomingHandler = exported.incomingHandler;
