#!/usr/bin/env node
// TensorFlow.js itself running one of brainchop's MeshNet models on a prepared input.
//
//   node run_tfjs.cjs MODEL_DIR INPUT.f32 D H W OUTPUT.u8 [wasm|cpu]
//
// MODEL_DIR holds the tfjs layers model (model.json + its .bin weights, as brainchop ships it).
// INPUT.f32 is the network input written by medvision (raw little-endian float32, C order,
// D x H x W, one channel: what brainchop feeds the model after conform, normalisation, crop,
// padding and transpose). The layers are applied one after the other with Layer.apply, as
// brainchop's inferenceFullVolumePhase2 does (so any input size works), then tf.argMax over the
// channels; OUTPUT.u8 receives the class of each voxel (raw uint8, D x H x W, C order).
// The packages come from TFJS_MODULES (default: benchmarks/out/tfjs/node_modules), installed from
// this folder's package.json / package-lock.json (exact versions).
'use strict'
const fs = require('fs')
const path = require('path')
const { createRequire } = require('module')

const modules = process.env.TFJS_MODULES || path.resolve(__dirname, '..', 'out', 'tfjs', 'node_modules')
const req = createRequire(path.join(modules, 'noop.js'))
const tf = req('@tensorflow/tfjs')

async function main () {
  const [dir, input, d, h, w, output, backend = 'wasm'] = process.argv.slice(2)
  if (!output) {
    console.error('usage: node run_tfjs.cjs MODEL_DIR INPUT.f32 D H W OUTPUT.u8 [wasm|cpu]')
    process.exit(2)
  }
  if (backend === 'wasm') {
    const wasm = req('@tensorflow/tfjs-backend-wasm')
    wasm.setWasmPaths(path.join(modules, '@tensorflow', 'tfjs-backend-wasm', 'dist') + path.sep)
    wasm.setThreadsCount(Number(process.env.TFJS_THREADS || 1))
  }
  await tf.setBackend(backend)
  await tf.ready()
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'))
  const specs = []
  const buffers = []
  for (const group of json.weightsManifest) {
    specs.push(...group.weights)
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)))
  }
  const all = Buffer.concat(buffers)
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength)
  const model = await tf.loadLayersModel(tf.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs: specs, weightData }))
  const shape = [Number(d), Number(h), Number(w)]
  const raw = fs.readFileSync(input)
  const n = shape[0] * shape[1] * shape[2]
  if (raw.byteLength !== 4 * n) throw new Error(`${input}: ${raw.byteLength} bytes, not 4 x ${shape.join(' x ')}`)
  const data = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength))
  const start = Date.now()
  let x = tf.tensor(data, [1, ...shape, 1])
  for (let i = 1; i < model.layers.length; i++) {
    let y = model.layers[i].apply(x)
    if (model.layers[i].name.endsWith('_gn')) {
      // brainchop's LayerNormInPlace after a '_gn' convolution (mindgrab): each channel standardised
      const z = tf.tidy(() => {
        const { mean, variance } = tf.moments(y, [1, 2, 3], true)
        return tf.mul(tf.sub(y, mean), tf.rsqrt(tf.add(variance, 1e-5)))
      })
      y.dispose()
      y = z
    }
    x.dispose()
    x = y
  }
  const labels = tf.argMax(x, -1)
  const out = Uint8Array.from(await labels.data())
  fs.writeFileSync(output, out)
  const seconds = (Date.now() - start) / 1000
  console.log(JSON.stringify({ model: dir, backend: tf.getBackend(), shape, classes: x.shape[4], seconds, tfjs: tf.version.tfjs }))
}

main().catch((err) => { console.error(err); process.exit(1) })
