// Runs an export of kd-wgpu (`kd-wgpu export-web DIR`) on WebGPU: the same WGSL, the same
// buffers with the same initial contents, the same bind groups and dispatches as the native
// engine, one submission per step. See docs/browser.md for the export's format.

export const FORMAT = 'kd-wgpu-web/1';

/** Loads `export.json` and `buffers.bin` from the directory URL `base`. */
export async function loadExport(base) {
  const get = async (name) => {
    const url = new URL(name, base);
    let res;
    try {
      res = await fetch(url);
    } catch (e) {
      throw new Error(`cannot fetch ${url}: ${e.message}`);
    }
    if (!res.ok) throw new Error(`cannot load ${url}: HTTP ${res.status}. Write an export with: kd-wgpu export-web DIR`);
    return res;
  };
  const exp = await (await get('export.json')).json();
  if (exp.format !== FORMAT) {
    throw new Error(`the export is in format "${exp.format}", this page reads "${FORMAT}": export it again with this version of kd-wgpu`);
  }
  const blob = await (await get('buffers.bin')).arrayBuffer();
  return { exp, blob };
}

/** What the export asks of a device beyond WebGPU's defaults. */
function requiredLimits(exp) {
  const storageBindings = (d) => d.bindings.filter((b) => exp.buffers[b.buffer].usage === 'storage');
  const dispatches = exp.plans.flatMap((p) => p.dispatches);
  return {
    maxBufferSize: Math.max(...exp.buffers.map((b) => b.bytes)),
    maxStorageBufferBindingSize: Math.max(...dispatches.flatMap((d) => storageBindings(d).map((b) => b.bytes))),
    maxStorageBuffersPerShaderStage: Math.max(...dispatches.map((d) => storageBindings(d).length)),
    maxComputeWorkgroupsPerDimension: Math.max(...dispatches.flatMap((d) => d.workgroups)),
  };
}

/** The adapter and a device with the limits the export needs; errors say what is missing. */
export async function openDevice(exp) {
  if (!navigator.gpu) {
    throw new Error('This browser has no WebGPU (navigator.gpu is missing). Use a browser with WebGPU ' +
      '(Chrome or Edge 113+, Safari 26+, Firefox 141+ on Windows), and open the page over http://localhost or https.');
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('WebGPU is present, but it offered no adapter (is the GPU blocklisted or disabled?).');
  const limits = requiredLimits(exp);
  for (const [name, needed] of Object.entries(limits)) {
    if (adapter.limits[name] < needed) {
      throw new Error(`This adapter's ${name} is ${adapter.limits[name]}, but the export needs ${needed}: ` +
        'export a smaller slice (--train-limit, --test-limit) or batch (--batch-size).');
    }
  }
  const device = await adapter.requestDevice({ requiredLimits: limits });
  device.lost.then((info) => console.error(`WebGPU device lost: ${info.message}`));
  return { adapter, device };
}

/** The export's buffers, pipelines and bind groups, made once, and its plans run on them. */
export class Runner {
  constructor(device, exp, blob) {
    this.device = device;
    this.exp = exp;
    this.blob = blob;
  }

  /** Creates every buffer (filled from `buffers.bin`), pipeline and bind group. */
  async init() {
    const { device, exp, blob } = this;
    device.pushErrorScope('validation');
    this.buffers = exp.buffers.map((b) => {
      const usage = b.usage === 'uniform'
        ? GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC
        : GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
      const buffer = device.createBuffer({ label: b.label, size: b.bytes, usage, mappedAtCreation: b.init !== null });
      if (b.init !== null) {
        new Uint8Array(buffer.getMappedRange()).set(new Uint8Array(blob, b.init[0], b.init[1]));
        buffer.unmap();
      }
      return buffer;
    });
    const modules = {};
    for (const [name, code] of Object.entries(exp.shaders)) {
      const module = device.createShaderModule({ label: name, code });
      const errors = (await module.getCompilationInfo()).messages.filter((m) => m.type === 'error');
      if (errors.length) {
        throw new Error(`shader ${name}.wgsl does not compile here: ` +
          errors.map((m) => `line ${m.lineNum}: ${m.message}`).join('; '));
      }
      modules[name] = module;
    }
    const pipelines = new Map();
    const pipeline = (d) => {
      const key = `${d.shader}::${d.entry}`;
      if (!pipelines.has(key)) {
        pipelines.set(key, device.createComputePipelineAsync({
          label: key, layout: 'auto', compute: { module: modules[d.shader], entryPoint: d.entry },
        }));
      }
      return pipelines.get(key);
    };
    this.plans = [];
    for (const plan of exp.plans) {
      const steps = [];
      for (const d of plan.dispatches) {
        const p = await pipeline(d);
        const bindGroup = device.createBindGroup({
          label: `${plan.name}: ${d.shader}::${d.entry}`,
          layout: p.getBindGroupLayout(0),
          entries: d.bindings.map((b, i) => ({
            binding: i, resource: { buffer: this.buffers[b.buffer], offset: b.offset, size: b.bytes },
          })),
        });
        steps.push({ pipeline: p, bindGroup, workgroups: d.workgroups });
      }
      this.plans.push({ info: plan, dispatches: steps });
    }
    const error = await device.popErrorScope();
    if (error) throw new Error(`setting up the plans failed: ${error.message}`);
  }

  /** Starts epoch `epoch` of plan `p`: its sample order, and the step index back to 0. */
  beginEpoch(p, epoch) {
    const info = this.plans[p].info;
    const [start] = info.orders;
    const order = new Uint32Array(this.blob, start + epoch * info.samples * 4, info.samples);
    this.device.queue.writeBuffer(this.buffers[info.order.buffer], info.order.offset, order);
    this.device.queue.writeBuffer(this.buffers[info.state.buffer], info.state.offset, new Uint32Array([0]));
  }

  /** One step of each plan in `plans`, recorded into one compute pass and one submission. */
  step(plans) {
    const encoder = this.device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    for (const p of plans) {
      for (const d of this.plans[p].dispatches) {
        pass.setPipeline(d.pipeline);
        pass.setBindGroup(0, d.bindGroup);
        pass.dispatchWorkgroups(...d.workgroups);
      }
    }
    pass.end();
    this.device.queue.submit([encoder.finish()]);
  }

  /** Copies `bytes` of `range` back (waiting for the steps before). */
  async read(range, bytes = range.bytes) {
    const staging = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const encoder = this.device.createCommandEncoder();
    encoder.copyBufferToBuffer(this.buffers[range.buffer], range.offset, staging, 0, bytes);
    this.device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const copy = staging.getMappedRange().slice(0);
    staging.destroy();
    return copy;
  }

  /**
   * Plan `p`'s metrics of the epoch's first `steps` steps: per step, loss sum, correct count
   * and a distillation loss's terms' sums (`metrics_width` values).
   */
  async metrics(p, steps) {
    const info = this.plans[p].info;
    return new Float32Array(await this.read(info.metrics, steps * info.metrics_width * 4));
  }

  /** The weights plan `p` trains or evaluates. */
  async weights(p) {
    return new Float32Array(await this.read(this.plans[p].info.weights));
  }
}

/** Sums of a metrics array of `width` values a step: [loss sum, correct count]. */
export function totals(metrics, width) {
  let loss = 0;
  let correct = 0;
  for (let i = 0; i < metrics.length; i += width) {
    loss += metrics[i];
    correct += metrics[i + 1];
  }
  return [loss, correct];
}
