// The page: loads an export, trains the distilled and the scratch student side by side (one
// submission a step for both), draws their running loss and accuracy, evaluates both on the
// test slice and shows the closing table.
//
// Query parameters: `export=URL` (the export's directory, default `export/`), `autostart=1`,
// `readbacks=N` (metric readbacks per epoch, default 20), and `steps=N` (stop after N training
// steps and publish what they did, for the tests).
// When done, `window.kdResult` holds the figures; on failure `window.kdError` the message.

import { loadExport, openDevice, Runner, totals } from './engine.js';

const params = new URLSearchParams(location.search);
const base = new URL(params.get('export') ?? 'export/', location.href);
const stopAfter = params.has('steps') ? Number(params.get('steps')) : Infinity;
// Metric readbacks (points of the curves) per epoch; each waits for the device.
const readbacks = Number(params.get('readbacks') ?? 20);
const $ = (id) => document.getElementById(id);
const STUDENTS = ['distilled', 'scratch'];
const COLORS = { distilled: '#1f77b4', scratch: '#d62728' };

function status(text) {
  $('status').textContent = text;
}

function log(line) {
  $('log').textContent += `${line}\n`;
}

/** Running means of each student over the steps done, as curves (x: steps overall). */
class Curves {
  constructor(totalSteps) {
    this.totalSteps = totalSteps;
    this.points = { distilled: [], scratch: [] };
  }

  add(student, step, loss, accuracy) {
    this.points[student].push({ step, loss, accuracy });
    this.draw('loss-chart', 'loss', 'training loss');
    this.draw('acc-chart', 'accuracy', 'training accuracy');
  }

  draw(id, key, title) {
    const canvas = $(id);
    const ctx = canvas.getContext('2d');
    const [w, h, pad] = [canvas.width, canvas.height, 40];
    ctx.clearRect(0, 0, w, h);
    const all = STUDENTS.flatMap((s) => this.points[s].map((p) => p[key]));
    if (!all.length) return;
    const [lo, hi] = key === 'accuracy' ? [0, 1] : [0, Math.max(...all) * 1.05];
    const x = (step) => pad + (w - 2 * pad) * (step / this.totalSteps);
    const y = (v) => h - pad - (h - 2 * pad) * ((v - lo) / (hi - lo || 1));
    ctx.strokeStyle = '#999';
    ctx.strokeRect(pad, pad, w - 2 * pad, h - 2 * pad);
    ctx.fillStyle = '#333';
    ctx.font = '13px sans-serif';
    ctx.fillText(title, pad, pad - 12);
    ctx.fillText(hi.toFixed(2), 4, pad + 4);
    ctx.fillText(lo.toFixed(2), 4, h - pad);
    ctx.fillText(`step ${this.totalSteps}`, w - pad - 60, h - pad + 18);
    STUDENTS.forEach((s, i) => {
      const pts = this.points[s];
      ctx.strokeStyle = COLORS[s];
      ctx.lineWidth = 2;
      ctx.beginPath();
      pts.forEach((p, j) => (j ? ctx.lineTo(x(p.step), y(p[key])) : ctx.moveTo(x(p.step), y(p[key]))));
      ctx.stroke();
      // The legend sits above the plot, right of the title, clear of the lines.
      ctx.fillStyle = COLORS[s];
      ctx.fillText(`— ${s}`, w - pad - 150 + 75 * i, pad - 12);
    });
  }
}

function closingTable(rows, diff) {
  const cells = rows.map((r) => `<tr><td>${r.student}</td><td>${r.accuracy.toFixed(4)}</td>` +
    `<td>${r.loss.toFixed(4)}</td><td>${r.trainSeconds.toFixed(1)} s</td></tr>`).join('');
  $('results').innerHTML = '<table><thead><tr><th>student</th><th>test accuracy</th>' +
    `<th>test loss (cross-entropy)</th><th>train time</th></tr></thead><tbody>${cells}</tbody></table>` +
    `<p>distilled − scratch accuracy: <b>${diff >= 0 ? '+' : ''}${diff.toFixed(4)}</b> ` +
    `(${(100 * diff).toFixed(2)} points, one seed)</p>`;
}

async function run() {
  $('start').disabled = true;
  status(`Loading ${base.href} ...`);
  const { exp, blob } = await loadExport(base);
  const cfg = exp.config;
  $('about').textContent = `Export of ${exp.plans[0].samples} training and ${exp.plans[2].samples} test images, ` +
    `${exp.epochs} epoch${exp.epochs === 1 ? '' : 's'}, batch ${cfg.batch_size}, alpha ${cfg.alpha}, T ${cfg.temperature}, seed ${cfg.seed}; ` +
    `made on ${exp.adapter}.`;
  status('Opening WebGPU ...');
  const { adapter, device } = await openDevice(exp);
  const about = adapter.info ?? {};
  $('adapter').textContent = `WebGPU adapter: ${[about.vendor, about.architecture, about.description].filter(Boolean).join(' ')}`;
  status('Compiling shaders and building the plans ...');
  const runner = new Runner(device, exp, blob);
  await runner.init();

  const train = [0, 1];
  const steps = exp.plans[0].steps;
  const totalSteps = Math.min(steps * exp.epochs, stopAfter);
  const curves = new Curves(totalSteps);
  const every = Math.max(1, Math.ceil(steps / readbacks));
  const epochs = { distilled: [], scratch: [] };
  let done = 0;
  let doneInEpoch = 0;
  const started = performance.now();
  training: for (let epoch = 0; epoch < exp.epochs; epoch++) {
    train.forEach((p) => runner.beginEpoch(p, epoch));
    for (let s = 1; s <= steps; s++) {
      runner.step(train);
      done++;
      doneInEpoch = s;
      const last = s === steps || done === stopAfter;
      if (s % every === 0 || last) {
        for (const p of train) {
          const info = exp.plans[p];
          const [loss, correct] = totals(await runner.metrics(p, s), info.metrics_width);
          if (!Number.isFinite(loss)) {
            throw new Error(`${info.name}: the loss became ${loss} by step ${s} of epoch ${epoch + 1}; ` +
              'export again with a lower --learning-rate');
          }
          const seen = Math.min(s * info.batch, info.samples);
          curves.add(info.student, done, loss / seen, correct / seen);
          if (s === steps) epochs[info.student].push({ loss: loss / seen, accuracy: correct / seen });
        }
        $('progress').value = done / totalSteps;
        const ms = (performance.now() - started) / done;
        status(`Training: epoch ${epoch + 1}/${exp.epochs}, step ${s}/${steps} (${ms.toFixed(1)} ms a step for both)`);
      }
      if (done === stopAfter) break training;
    }
    for (const p of train) {
      const e = epochs[exp.plans[p].student].at(-1);
      log(`epoch ${epoch + 1}: ${exp.plans[p].student} student - loss ${e.loss.toFixed(4)} - accuracy ${e.accuracy.toFixed(4)}`);
    }
  }
  const trainSeconds = (performance.now() - started) / 1000;
  const msPerStep = (1000 * trainSeconds) / done;

  if (done === stopAfter) {
    // The metrics of the epoch the run stopped in, per step, and the weights reached.
    const result = { steps: done, stepsInEpoch: doneInEpoch, msPerStep, students: {} };
    for (const p of train) {
      const metrics = await runner.metrics(p, doneInEpoch);
      result.students[exp.plans[p].student] = { metrics: Array.from(metrics), weights: Array.from(await runner.weights(p)) };
    }
    status(`Stopped after ${done} steps as asked (${msPerStep.toFixed(1)} ms a step for both students).`);
    window.kdResult = result;
    return;
  }

  status('Evaluating on the test images ...');
  const rows = [];
  for (const p of [2, 3]) {
    const info = exp.plans[p];
    runner.beginEpoch(p, 0);
    for (let s = 0; s < info.steps; s++) runner.step([p]);
    const [loss, correct] = totals(await runner.metrics(p, info.steps), info.metrics_width);
    rows.push({ student: info.student, loss: loss / info.samples, accuracy: correct / info.samples, trainSeconds });
  }
  const diff = rows[0].accuracy - rows[1].accuracy;
  closingTable(rows, diff);
  status(`Done: ${done} steps in ${trainSeconds.toFixed(1)} s (${msPerStep.toFixed(1)} ms a step for both students).`);
  window.kdResult = { steps: done, msPerStep, epochs, test: rows, difference: diff };
}

function fail(e) {
  status('');
  $('error').textContent = e.message ?? String(e);
  window.kdError = e.message ?? String(e);
  $('start').disabled = false;
}

$('start').addEventListener('click', () => run().catch(fail));
$('export').textContent = base.href;
if (params.get('autostart') === '1') run().catch(fail);
