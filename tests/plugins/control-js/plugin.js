// `control-js`: a pilot-host test plugin for the JavaScript SDK's outgoing HTTP. `POST /send?to=URL`
// posts `{"from": "control-js"}` to URL with pilot.httpSend() and answers 200 with the status and
// body it got, or the SDK's error: 403 when the host is not granted, 502 when the request failed
// (both by letting the `HttpError` through), 400 for a bad URL.
import * as pilot from './pilot_control.js';

class ControlJs extends pilot.ControlPlugin {
  describe() {
    return { name: 'control-js', version: '0.1.0' };
  }

  handle(request) {
    const to = new URLSearchParams(request.query ?? '').get('to');
    if (request.path !== '/send' || !to) return pilot.text(404, 'try POST /send?to=URL\n');
    let answer;
    try {
      answer = pilot.httpSend({
        method: 'POST', url: to, headers: { 'x-sdk': 'js' }, body: { from: 'control-js' },
      });
    } catch (e) {
      if (e instanceof pilot.InvalidConfig) return pilot.text(400, `${e.message}\n`);
      throw e;
    }
    return pilot.json(200, {
      status: answer.status, body: answer.body, content_length: answer.headers['content-length'] ?? null,
    });
  }
}

const exported = pilot.exportControl(ControlJs);
export const controlPlugin = exported.controlPlugin;
export const incomingHandler = exported.incomingHandler;
