// A character-level Transformer language model on the English text of the Debian package
// `fortunes` (/usr/share/games/fortunes), checkpointed per block through the public checkpoint API.
//
//   swift run -c release char-transformer            # trains for 10 minutes
//   swift run -c release char-transformer --steps 5  # a few steps
//
// Prints training and validation loss in bits per character, and the peak tensor memory of a
// training step with and without checkpointing.
import Foundation
import Reprise

// MARK: Options

var steps: Int? = nil, minutes = 10.0, threads: Int? = nil
var arguments = CommandLine.arguments.dropFirst()
while let option = arguments.popFirst() {
  switch option {
  case "--steps": steps = arguments.popFirst().flatMap { Int($0) }
  case "--minutes": minutes = arguments.popFirst().flatMap { Double($0) } ?? minutes
  case "--threads": threads = arguments.popFirst().flatMap { Int($0) }
  default:
    FileHandle.standardError.write(Data("usage: char-transformer [--steps N] [--minutes M] [--threads T]\n".utf8))
    exit(64)
  }
}
if let threads { Parallel.setThreadCount(threads) }

// MARK: Data

let directory = "/usr/share/games/fortunes"
let files = (try? FileManager.default.contentsOfDirectory(atPath: directory))?.sorted().filter { name in
  var isDirectory: ObjCBool = false
  let path = directory + "/" + name
  return !name.contains(".") && FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && !isDirectory.boolValue
} ?? []
let text = files.flatMap { [UInt8](FileManager.default.contents(atPath: directory + "/" + $0) ?? Data()) }
guard text.count > 100_000 else {
  FileHandle.standardError.write(Data("char-transformer: no corpus in \(directory); install the Debian package fortunes\n".utf8))
  exit(1)
}
let alphabet = Array(Set(text)).sorted()
let code = Dictionary(uniqueKeysWithValues: alphabet.enumerated().map { ($0.element, $0.offset) })
let tokens = text.map { code[$0]! }
let split = tokens.count * 9 / 10
let (training, validation) = (Array(tokens[..<split]), Array(tokens[split...]))

let (context, width, heads, depth, batchSize) = (128, 128, 4, 4, 32)
var sampler = RandomGenerator(seed: 1)

/// A batch of `batchSize` windows of `context` characters and the characters that follow each.
func batch(from source: [Int]) -> (inputs: IndexTensor, targets: [Int]) {
  var inputs: [Int] = [], targets: [Int] = []
  for _ in 0..<batchSize {
    let start = Int(sampler.next() % UInt64(source.count - context - 1))
    inputs += source[start..<start + context]
    targets += source[start + 1..<start + context + 1]
  }
  return (IndexTensor(inputs, shape: [batchSize, context]), targets)
}

// MARK: Model

final class CharTransformer: Module {
  let tokenEmbedding: Embedding, positionEmbedding: Embedding
  let blocks: [TransformerBlock]
  let norm: LayerNorm, head: Linear
  var checkpointed = true

  init(vocabulary: Int) {
    tokenEmbedding = Embedding(count: vocabulary, dimension: width)
    positionEmbedding = Embedding(count: context, dimension: width)
    for embedding in [tokenEmbedding, positionEmbedding] { embedding.weight.value = embedding.weight.value * 0.02 }
    blocks = (0..<depth).map { _ in TransformerBlock(embeddingDimension: width, headCount: heads, causal: true) }
    norm = LayerNorm([width])
    head = Linear(inputFeatures: width, outputFeatures: vocabulary)
  }

  var children: [(name: String, module: any Module)] {
    [("token_embedding", tokenEmbedding), ("position_embedding", positionEmbedding)]
      + blocks.enumerated().map { ("blocks.\($0.offset)", $0.element) } + [("norm", norm), ("head", head)]
  }

  /// Logits [batch, vocabulary, length] for `tokens` [batch, length].
  func callAsFunction(_ tokens: IndexTensor) -> Variable {
    let positions = IndexTensor(Array(0..<tokens.shape[1]))
    var x = tokenEmbedding(tokens) + positionEmbedding(positions)
    for block in blocks {
      // Each block a checkpoint region: only its input is kept for the backward pass.
      x = checkpointed ? checkpoint(x) { block($0) } : block(x)
    }
    return permute(head(norm(x)), [0, 2, 1])
  }
}

RandomGenerator.global = RandomGenerator(seed: 0)
let model = CharTransformer(vocabulary: alphabet.count)
// AdamW with β₂ = 0.99, which adapts faster than 0.999 over a run of a thousand-odd steps.
let peakRate = 5e-3
let optimizer = Adam(model.parameters, learningRate: peakRate, betas: (0.9, 0.99), weightDecay: 0.01, decoupled: true)
let bits = 1 / Foundation.log(2.0)
print("char-transformer: \(text.count) characters of \(files.count) fortune files, \(alphabet.count) symbols, "
  + "\(model.parameterCount) parameters, \(depth) blocks of width \(width), \(heads) heads, context \(context), batch \(batchSize)")

/// One training step; returns the loss in bits per character.
func trainingStep() -> Double {
  let (inputs, targets) = batch(from: training)
  optimizer.zeroGradients()
  let loss = withLearningPhase(.training) { crossEntropy(model(inputs), labels: targets) }
  loss.backward()
  clipGradientNorm(model.parameters, maxNorm: 1)
  optimizer.step()
  return loss.value.scalar * bits
}

/// The mean validation loss in bits per character over a fixed set of batches.
func validationLoss() -> Double {
  var generator = RandomGenerator(seed: 99)
  swap(&generator, &sampler)
  defer { swap(&generator, &sampler) }
  return withoutRecording {
    withLearningPhase(.inference) {
      (0..<8).map { _ in
        let (inputs, targets) = batch(from: validation)
        return crossEntropy(model(inputs), labels: targets).value.scalar * bits
      }.reduce(0, +) / 8
    }
  }
}

// MARK: Training

for checkpointed in [false, true] {
  model.checkpointed = checkpointed
  Allocator.resetPeak()
  let base = Allocator.liveBytes
  let (inputs, targets) = batch(from: training)
  withLearningPhase(.training) { crossEntropy(model(inputs), labels: targets) }.backward()
  model.zeroGradients()
  print(String(format: "peak tensor memory of a step %@ checkpointing: %.1f MiB", checkpointed ? "with" : "without",
    Double(Allocator.peakBytes - base) / 1_048_576))
}
model.checkpointed = true

// Warm-up, stable, decay: 100 warm-up steps, the peak rate, then cosine annealing over the last
// fifth of the run. A timed run starts its decay at four fifths of its time, over the steps that the
// last 100 took time for, so that a machine slower than expected still anneals before the end.
let totalSteps = steps ?? Int.max
let warmup = LearningRateSchedule.warmup(steps: 100, then: .constant)
var decay: (start: Int, schedule: LearningRateSchedule)? =
  steps.map { n in (n * 4 / 5, .cosine(totalSteps: max(n - n * 4 / 5, 1), minimum: 1e-4)) }
let started = monotonicSeconds()
var step = 0, recent: [Double] = [], trainingSeconds = 0.0
var (hundredStarted, secondsPerStep) = (started, 0.0)  // the pace of the last 100 steps, validation included
while step < totalSteps && (steps != nil || monotonicSeconds() - started < minutes * 60) {
  let left = minutes * 60 - (monotonicSeconds() - started)
  if decay == nil && secondsPerStep > 0 && left <= minutes * 60 / 5 {
    decay = (step, .cosine(totalSteps: max(Int(left / secondsPerStep), 1), minimum: 1e-4))
  }
  if let decay, step >= decay.start {
    optimizer.learningRate = decay.schedule.rate(base: peakRate, step: step - decay.start)
  } else {
    optimizer.learningRate = warmup.rate(base: peakRate, step: step)
  }
  let stepStarted = monotonicSeconds()
  recent.append(trainingStep())
  if step > 0 { trainingSeconds += monotonicSeconds() - stepStarted }  // the first step fills caches
  step += 1
  if step % 100 == 0 || step == totalSteps {
    if step % 100 == 0 { (hundredStarted, secondsPerStep) = (monotonicSeconds(), (monotonicSeconds() - hundredStarted) / 100) }
    let train = recent.reduce(0, +) / Double(recent.count)
    recent = []
    print(String(format: "step %d  %.0f s  train %.3f bits/char  validation %.3f bits/char", step, monotonicSeconds() - started, train, validationLoss()))
  }
}
print(String(format: "trained %d steps in %.0f s (%.4f s a training step); validation %.3f bits/char", step,
  monotonicSeconds() - started, trainingSeconds / Double(max(step - 1, 1)), validationLoss()))
