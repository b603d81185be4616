// bbb-recorder compatible front end to bbb-record, for Esup-Pod's import_video module:
//   cd <IMPORT_VIDEO_BBB_RECORDER_PLUGIN>; node export.js <url> <filename> > <log> 2>&1
// records <url> with bbb-record into <copyToPath>/<filename> (copyToPath from .env beside this
// script). Exit 0 only when the file is complete under that name; otherwise the last line of
// the output says why and the exit code is not 0. No npm dependencies (Node 18 or later).
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

function fail(code, message) {
  console.error(`export.js: ${message}`);
  process.exit(code);
}

// .env in the plugin directory (the one Pod cds into, even when export.js is a symlink):
// KEY=VALUE lines, `#` comments, optional `export ` and quotes; values are taken literally.
const dir = path.dirname(path.resolve(process.argv[1]));
const envFile = path.join(dir, '.env');
const env = {};
let text;
try { text = fs.readFileSync(envFile, 'utf8'); } catch (e) { fail(2, `cannot read ${envFile}: ${e.message}`); }
for (const line of text.split(/\r?\n/)) {
  const m = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*?)\s*$/.exec(line);
  if (m) env[m[1]] = m[2].replace(/^(['"])(.*)\1$/, '$2');
  else if (line.trim() !== '' && !line.trim().startsWith('#')) fail(2, `${envFile}: cannot parse line ${JSON.stringify(line)}`);
}

const [url, filename, ...rest] = process.argv.slice(2);
const usage = 'usage: node export.js <http(s) playback URL> <name>.webm|.mp4|.mkv';
if (!url || !filename || rest.length > 0) fail(2, usage);
if (filename.includes('/') || filename.startsWith('.') || !/^[^\0\n]+\.(mp4|m4v|webm|mkv)$/i.test(filename)) {
  fail(2, `bad file name ${JSON.stringify(filename)}: a plain name ending in .webm, .mp4, .m4v or .mkv`);
}
if (!env.copyToPath) fail(2, `${envFile}: copyToPath is not set`);
const outDir = path.resolve(dir, env.copyToPath);
if (!fs.statSync(outDir, { throwIfNoEntry: false })?.isDirectory()) fail(2, `copyToPath ${outDir} is not a directory`);
const output = path.join(outDir, filename);
// Pod takes any file under this name for a success: never leave an older one there.
try { fs.rmSync(output, { force: true }); } catch (e) { fail(2, `cannot remove an older ${output}: ${e.message}`); }
if (!/^https?:\/\/[^\s/]+\S*$/i.test(url)) fail(2, `not an http(s) URL: ${JSON.stringify(url.split('?')[0])}`);

const bin = process.env.BBB_RECORD || env.BBB_RECORD || 'bbb-record';
const extra = (env.BBB_RECORD_ARGS || '').split(/\s+/).filter(Boolean);
// The URL goes on standard input (`-`): a token in it stays out of `ps`. bbb-record writes
// beside `output` under a hidden name and renames it into place only when it is complete.
const args = [...extra, '-o', output, '-'];
console.log(`export.js: ${bin} ${args.join(' ')} (URL on stdin)`);
// setpriv --pdeathsig: bbb-record stops if this process is killed with SIGKILL.
const setpriv = '/usr/bin/setpriv';
const wrapped = fs.existsSync(setpriv);
const child = wrapped
  ? spawn(setpriv, ['--pdeathsig', 'TERM', '--', bin, ...args], { stdio: ['pipe', 'inherit', 'pipe'] })
  : spawn(bin, args, { stdio: ['pipe', 'inherit', 'pipe'] });
child.stdin.on('error', () => {});
child.stdin.end(url + '\n');
let tail = '';
child.stderr.on('data', (chunk) => {
  process.stderr.write(chunk);
  tail = (tail + chunk.toString()).slice(-4000);
});
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
  process.on(sig, () => { console.error(`export.js: ${sig}: stopping bbb-record`); child.kill(sig); });
}
child.on('error', (e) => fail(127, `bbb-record failed (not started): cannot run ${bin}: ${e.message} (set BBB_RECORD in ${envFile})`));
child.on('close', (code, signal) => {
  if (code === 0 && fs.statSync(output, { throwIfNoEntry: false })?.size > 0) {
    console.log(`export.js: done: ${output}`);
    process.exit(0);
  }
  const lines = tail.split('\n').map((l) => l.trim()).filter(Boolean);
  const why = code === 0 ? `no ${output}` : (lines.pop() || 'no message').replace(/^bbb-record: /, '');
  const status = code === 0 ? 1 : code ?? 128 + (os.constants.signals[signal] || 0);
  fail(status, `bbb-record failed (exit ${code ?? signal}): ${why}`);
});
