// Drives the dashboard in headless Chromium (Debian's, through playwright-core): loads the page,
// clicks Restart on a process, waits for its new pid in the table, and saves a screenshot; all under
// the page's Content-Security-Policy, whose violations it records, and which it then proves enforced
// by injecting an inline script that must not run.
// Input (environment): PLAYWRIGHT_CORE (the module's folder), CHROMIUM, URL, PROCESS, SCREENSHOT.
// Output: one JSON line {"old": pid, "new": pid, "events": n, "rows": n, "csp": header,
// "frame": header, "violations": [...], "inline_ran": bool} on stdout.
'use strict';
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    headless: true,
    // As root, and on a machine without a network: no sandbox, no background connections.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.addInitScript(() => {
      window.__violations = [];
      document.addEventListener('securitypolicyviolation',
        (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
    });
    const response = await page.goto(process.env.URL);
    const headers = response.headers();
    const pid = page.locator(`tr[data-process="${process.env.PROCESS}"] td.pid`);
    await pid.filter({ hasText: /^\d+$/ }).waitFor({ timeout: 15000 });
    const old = (await pid.textContent()).trim();
    await page.locator(`tr[data-process="${process.env.PROCESS}"] button[data-action="restart"]`).click();
    await page.waitForFunction(([name, old]) => {
      const cell = document.querySelector(`tr[data-process="${name}"] td.pid`);
      return cell && /^\d+$/.test(cell.textContent.trim()) && cell.textContent.trim() !== old;
    }, [process.env.PROCESS, old], { timeout: 15000 });
    const now = (await pid.textContent()).trim();
    await page.locator('#events li', { hasText: 'spawned' }).first().waitFor({ timeout: 15000 });
    await page.locator('#log div').first().waitFor({ timeout: 15000 });
    const events = await page.locator('#events li').count();
    const rows = await page.locator('#processes tbody tr').count();
    await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
    if (errors.length) throw new Error('page errors: ' + errors.join('; '));
    const violations = await page.evaluate(() => window.__violations.slice());
    const inlineRan = await page.evaluate(() => {
      const s = document.createElement('script');
      s.textContent = 'window.__inline = true;';
      document.body.append(s);
      return window.__inline === true;
    });
    console.log(JSON.stringify({
      old: Number(old), new: Number(now), events, rows,
      csp: headers['content-security-policy'] || null,
      frame: headers['x-frame-options'] || null,
      violations, inline_ran: inlineRan,
    }));
  } finally {
    await browser.close();
  }
}

main().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
