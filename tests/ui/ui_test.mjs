// Drives the controller web UI in headless Chromium (run by tests/ui.rs, which starts
// the node and checks the results through the API afterwards).
//
// Environment: SKYLAN_UI_LINK (the link `skylan controller ui` printed), SKYLAN_UI_MEMBER
// (an address to add and authorize), SKYLAN_UI_PROFILE (an empty directory for the
// browser profile), CHROMIUM (the browser binary). Prints one JSON line with what it
// made; exits non-zero with a message on the first thing that is not as expected.
import { chromium } from 'playwright-core';

const link = need('SKYLAN_UI_LINK');
const member = need('SKYLAN_UI_MEMBER');
const profile = need('SKYLAN_UI_PROFILE');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const STEP_MS = 10000;

const BROKEN = 'accept ethertype arp;\ndrop dport 22 and;\naccept;\n';
const FIXED = 'accept ethertype arp;\ndrop dport 22;\naccept;\n';
const NAME = 'ui-lab <b>bold</b>';

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run this through cargo test --test ui)`);
  return v;
}

let step = 'starting';
const problems = [];
const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const deadline = setTimeout(async () => {
  console.error(`ui test: timed out at step "${step}"`);
  await context.close().catch(() => {});
  process.exit(3);
}, 45000);

async function check(name, f) {
  step = name;
  await f();
}

try {
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Uncaught/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on('dialog', (d) => d.accept());
  const base = link.replace(/#.*$/, '');

  await check('without a token the page says how to get the link', async () => {
    await page.goto(base);
    await page.locator('#login').waitFor({ state: 'visible' });
    const text = await page.locator('#login').textContent();
    if (!text.includes('skylan controller ui')) throw new Error(`login text: ${text}`);
  });

  await check('the login link signs in and leaves the address bar', async () => {
    await page.goto(link);
    await page.locator('#app').waitFor({ state: 'visible' });
    if (page.url().includes('token')) throw new Error(`the token stayed in the URL: ${page.url()}`);
    const kept = await page.evaluate(() => sessionStorage.getItem('skylan.token'));
    if (!kept || !link.endsWith(kept)) throw new Error('the token is not in sessionStorage');
    await page.locator('#node-info', { hasText: /^node [0-9a-f]{10} / }).waitFor();
    await page.locator('#live', { hasText: 'live, updated' }).waitFor();
  });

  let nwid;
  await check('create a network (its name shown as text, not markup)', async () => {
    await page.fill('#new-network-name', NAME);
    await page.click('#create-network button[type=submit]');
    await page.locator('#network-title', { hasText: NAME }).waitFor();
    nwid = (await page.locator('#network-id').textContent()).trim();
    if (!/^[0-9a-f]{16}$/.test(nwid)) throw new Error(`network id ${nwid}`);
    if (await page.locator('#network-title b, #network-list b').count() !== 0) throw new Error('the name was rendered as markup');
    await page.locator('#network-list button', { hasText: nwid }).waitFor();
  });

  await check('edit the network settings', async () => {
    await page.locator('#tab-settings').waitFor({ state: 'visible' });
    await page.check('#net-v4-auto');
    await page.fill('#net-pools', '198.18.0.1-198.18.0.254');
    await page.fill('#net-routes', '198.18.0.0/15');
    await page.fill('#net-dns-domain', 'lab.example');
    await page.fill('#net-dns-servers', '198.18.0.53');
    await page.fill('#net-mtu', '1400');
    await page.click('#network-form button[type=submit]');
    await page.locator('#message', { hasText: 'Settings saved' }).waitFor();
  });

  await check('add and authorize a member', async () => {
    await page.click('.tab[data-tab=members]');
    await page.fill('#new-member-address', member);
    await page.click('#add-member button[type=submit]');
    const row = page.locator(`#members tr[data-address="${member}"]`);
    await row.locator('td.auth', { hasText: 'no' }).waitFor();
    await row.getByRole('button', { name: 'Authorize', exact: true }).click();
    await row.locator('td.auth', { hasText: 'yes' }).waitFor();
    // This node has never heard from the member: its live view must say so.
    const cells = await row.locator('td').allTextContents();
    if (cells[3] !== 'unknown' || cells[4] !== 'unknown') throw new Error(`live view: ${cells}`);
  });

  await check('a broken rule shows its line and column', async () => {
    await page.click('.tab[data-tab=rules]');
    await page.fill('#rules-source', BROKEN);
    await page.locator('#rules-status.error', { hasText: 'Error at line 2:15' }).waitFor();
    const caret = await page.locator('#rules-error').textContent();
    if (!caret.includes('drop dport 22 and;')) throw new Error(`error line: ${caret}`);
  });

  await check('the fixed rules compile, show where each rule is, and save', async () => {
    await page.fill('#rules-source', FIXED);
    await page.locator('#rules-status.ok', { hasText: 'Compiles: 3 rules' }).waitFor();
    await page.locator('#compiled-rules td code', { hasText: 'drop dport 22;' }).waitFor();
    await page.locator('#hits-note', { hasText: 'not a member of this network' }).waitFor();
    await page.click('#save-rules');
    await page.locator('#rules-saved', { hasText: 'Saved (revision' }).waitFor();
  });

  await check('the audit log lists the changes', async () => {
    await page.click('#show-audit');
    await page.locator('#audit td', { hasText: 'network.create' }).first().waitFor();
    await page.locator('#audit td.changes', { hasText: 'rulesSource' }).first().waitFor();
    await page.locator('#audit td code', { hasText: member }).first().waitFor();
  });

  await check('rule hits are read under both metric names', async () => {
    const text = `# TYPE skylan_rule_hits counter\nskylan_rule_hits{network="${nwid}",table="base",rule="1"} 7\n`
      + `skylan_rule_hits_total{network="${nwid}",table="base",rule="default"} 3\n`;
    const hits = await page.evaluate((t) => [...parseHits(t).entries()], text);
    const want = JSON.stringify([[`${nwid}/base/1`, 7], [`${nwid}/base/default`, 3]]);
    if (JSON.stringify(hits) !== want) throw new Error(`parsed ${JSON.stringify(hits)}`);
  });

  if (problems.length) throw new Error(problems.join('\n'));
  console.log(JSON.stringify({ nwid, rules: FIXED, name: NAME }));
  clearTimeout(deadline);
  await context.close();
} catch (e) {
  console.error(`ui test failed at step "${step}": ${e.message}`);
  if (problems.length) console.error(problems.join('\n'));
  clearTimeout(deadline);
  await context.close().catch(() => {});
  process.exit(1);
}
