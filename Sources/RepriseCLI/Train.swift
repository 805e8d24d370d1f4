import ArgumentParser
import Foundation
import Reprise
import RepriseDistributed

/// `reprise train`: trains a model; with no arguments, the main job (DenseNet-BC-40, k = 12,
/// memory-efficient, one epoch of Fashion-MNIST).
struct Train: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Train a model. With no arguments: DenseNet-BC-40 (k=12, memory-efficient) on Fashion-MNIST for one epoch.")

  enum ScheduleName: String, ExpressibleByArgument, CaseIterable {
    case constant, multistep, cosine, cyclicCosine = "cyclic-cosine"
  }

  @OptionGroup var modelOptions: ModelOptions
  @OptionGroup var dataOptions: DataOptions

  @Option(help: "Epochs to train.") var epochs = 1
  @Option(help: "Stop after this many steps in total (across resumes); the schedule still spans --epochs.") var maxSteps: Int?
  @Option(help: "Images per step.") var batchSize = 64
  @Option(
    help: "Split each batch into this many parts, run forward and backward one after another and add their gradients (gradient accumulation): the memory of one part, batch normalisation over each part.")
  var microBatches = 1
  @Option(help: "Base learning rate.") var lr = 0.1
  @Option(help: "SGD momentum.") var momentum = 0.9
  @Flag(inversion: .prefixedNo, help: "Nesterov momentum.") var nesterov = true
  @Option(help: "L2 weight decay.") var weightDecay = 1e-4
  @Option(help: "Learning-rate schedule, stepped every batch: constant, multistep (x0.1 at 50% and 75%), cosine, cyclic-cosine.")
  var schedule: ScheduleName = .cosine
  @Option(help: "Cycles of the cyclic-cosine schedule (snapshot ensembles), each ⌈steps after warm-up / cycles⌉ steps long.") var cycles = 2
  @Option(
    help: "With --schedule cyclic-cosine: save the model at the end of each cycle, just before the learning rate jumps back, as DIR/snapshot-1.safetensors, ... (snapshot ensembles; reprise eval --weights takes several).")
  var snapshots: String?
  @Option(
    help: "Network slimming: add S·sign(γ) to the gradient of every batch-norm scale γ after each backward pass (the paper: 1e-5 for DenseNet-40 and ResNet-164, 1e-4 for VGG); reprise prune then removes the channels of smallest |γ|.")
  var sparsity = 0.0
  @Option(help: "A linear warm-up of the learning rate over this many steps, before the schedule (which then spans the remaining steps).")
  var warmupSteps = 0
  @Option(help: "Label smoothing of the cross-entropy.") var labelSmoothing = 0.0
  @Flag(
    inversion: .prefixedNo,
    help: "Random crops (padding 2 for 28x28 images, 4 otherwise) and horizontal flips. Default: on for runs of more than one epoch, off for a single epoch (the main job), where it lowers accuracy.")
  var augment: Bool?
  @Flag(help: "Visit the training images in file order.") var noShuffle = false
  @Option(help: "Seed of initialisation, shuffling, augmentation and dropout.") var seed: UInt64 = 0
  @OptionGroup var threadOptions: ThreadOptions
  @Option(help: "Element type of the weights, activations and gradients: float32 or float64 (slower; for checking numerics).")
  var dtype: DType = .float32
  @Flag(
    inversion: .prefixedNo,
    help: "The model's hand-made checkpoint plan (DenseNet: every dense layer a region over the shared feature buffer). On unless --memory-budget or --checkpoint-segments chooses another plan.")
  var memoryEfficient = true
  @OptionGroup var planOptions: PlanOptions
  @Option(help: "Start from the model state in this safetensors file (fine-tuning); a file that records its network (a pruned one, say) needs no model options.")
  var initWeights: String?
  @Option(help: "Write the trained model's state here (PyTorch keys); default: a file named after the model and data.")
  var save: String?
  @Option(help: "Write the training state (model, optimiser, schedule position, random state) here after every epoch.")
  var checkpoint: String?
  @Option(help: "Continue exactly from a training state written by --checkpoint.") var resume: String?
  @Option(help: "Append one JSON object per epoch to this file.") var log: String?
  @Flag(help: "Keep training when the loss or the weights turn infinite or NaN (default: stop with an error naming the step).")
  var allowNonFinite = false
  @OptionGroup(title: "Distributed training") var distributedOptions: DistributedOptions

  func validate() throws {
    try check("--epochs", epochs, in: 1...1_000_000)
    try check("--batch-size", batchSize, in: 1...maximumBatchSize)
    if let maxSteps { try check("--max-steps", maxSteps, in: 1...(1 << 40)) }
    try check("--micro-batches", microBatches, in: 1...batchSize)
    guard microBatches == 1 || !distributedOptions.distributed else { throw ValidationError("--micro-batches does not combine with --distributed") }
    guard lr > 0, lr.isFinite else { throw ValidationError("--lr must be positive and finite, got \(lr)") }
    guard (0...1).contains(momentum) else { throw ValidationError("--momentum must be in [0, 1], got \(momentum)") }
    guard !nesterov || momentum > 0 else { throw ValidationError("--nesterov needs a positive --momentum") }
    guard weightDecay >= 0, weightDecay.isFinite else { throw ValidationError("--weight-decay must be finite and not negative, got \(weightDecay)") }
    guard (0...1).contains(labelSmoothing) else { throw ValidationError("--label-smoothing must be in [0, 1], got \(labelSmoothing)") }
    try check("--cycles", cycles, in: 1...1_000_000)
    guard snapshots == nil || schedule == .cyclicCosine else { throw ValidationError("--snapshots needs --schedule cyclic-cosine") }
    if let snapshots { try writableDirectory("--snapshots", snapshots) }
    guard sparsity >= 0, sparsity.isFinite else { throw ValidationError("--sparsity must be finite and not negative, got \(sparsity)") }
    try check("--warmup-steps", warmupSteps, in: 0...(1 << 40))
    if let initWeights { try readable("--init-weights", initWeights) }
    if let resume { try readable("--resume", resume) }
    try writable("--save", savePath(modelOptions.label))
    if let checkpoint { try writable("--checkpoint", checkpoint) }
    if let log { try writable("--log", log) }
    try distributedOptions.check()
  }

  /// Where the trained model goes: --save, or a file named after the model and data.
  func savePath(_ label: String) -> String { save ?? "\(label)-\(dataOptions.label).safetensors" }

  /// What decides the run's result, which --resume must find unchanged. Threads and checkpoint
  /// plans are left out: results are the same for any thread count and any plan.
  func runConfiguration(label: String) -> [String: String] {
    let configuration: [String: String] = [
      "model": label, "classes": modelOptions.classes.map { "\($0)" } ?? "data set's",
      "compression": modelOptions.compression.map { "\($0)" } ?? "default", "init-channels": modelOptions.initChannels.map { "\($0)" } ?? "default",
      "drop-rate": modelOptions.dropRate.map { "\($0)" } ?? "default", "window-drop-rate": modelOptions.windowDropRate.map { "\($0)" } ?? "default",
      "final-survival": "\(modelOptions.finalSurvival)", "dataset": dataOptions.dataset, "epochs": "\(epochs)",
      "batch-size": "\(batchSize)", "lr": "\(lr)", "momentum": "\(momentum)", "nesterov": "\(nesterov)", "weight-decay": "\(weightDecay)",
      "schedule": schedule.rawValue, "cycles": "\(cycles)", "warmup-steps": "\(warmupSteps)", "label-smoothing": "\(labelSmoothing)",
      "augment": augment.map { "\($0)" } ?? "default", "shuffle": "\(!noShuffle)", "seed": "\(seed)", "dtype": "\(dtype)",
    ]
    // Options added since training states were first written enter only when used, so that older
    // states still resume.
    return configuration.merging(microBatches == 1 ? [:] : ["micro-batches": "\(microBatches)"]) { $1 }
      .merging(sparsity == 0 ? [:] : ["sparsity": "\(sparsity)"]) { $1 }
  }

  /// ``runConfiguration`` with the process count and batch-norm synchronization of a distributed
  /// run, which decide its result too: a distributed run resumes with the same world size.
  func runConfiguration(label: String, _ communicator: Communicator?) -> [String: String] {
    guard let communicator else { return runConfiguration(label: label) }
    return runConfiguration(label: label).merging(["processes": "\(communicator.size)", "sync-batch-norm": "\(distributedOptions.syncBatchNorm)"]) { $1 }
  }

  func run() throws {
    let communicator = try distributedOptions.communicator()
    threadOptions.apply(sharingCoresWith: communicator.map(localProcessCount) ?? 1)
    guard let communicator, communicator.size > 1 else { return try train(communicator) }
    // An error on one process would leave the others waiting in a collective: end them all.
    do { try train(communicator) } catch { communicator.abort("\(error)") }
  }

  private func train(_ communicator: Communicator?) throws {
    let isRoot = communicator?.isRoot ?? true
    let (train, test) = try dataOptions.loadSplits(classes: modelOptions.classes)
    try modelOptions.checkInput(train.imageShape, source: dataOptions.dataset)
    guard test.imageShape == train.imageShape else {
      throw RunError("\(dataOptions.dataset): test images \(test.imageShape) differ from training images \(train.imageShape)")
    }
    RandomGenerator.global = RandomGenerator(seed: seed)
    // Regularisation that only pays off over many epochs (augmentation, dropout) is off by default
    // for a single epoch, where the model underfits and it only slows learning.
    let regularized = epochs > 1
    // The network a file records: --init-weights's, or else that of the run --resume continues
    // (a fine-tuned pruned network resumes without repeating --init-weights).
    let initial = try initWeights.map(SavedModel.init)
    let described = try initial ?? resume.map(SavedModel.init)
    let model = try modelOptions.make(for: described, inputShape: train.imageShape, classCount: train.classCount, regularized: regularized)
    model.convert(to: dtype)
    try initial?.load(into: model)
    let label = modelOptions.networkLabel(for: described), architecture = Architecture(of: model)
    let optimizer = SGD(model.parameters, learningRate: lr, momentum: momentum, weightDecay: weightDecay, nesterov: nesterov)
    let sampler = try communicator.map { try ShardedSampler(count: train.count, globalBatchSize: batchSize, rank: $0.rank, size: $0.size) }
    let parallel = try communicator.map { try distributedOptions.trainer(model, $0) }
    // Each process plans for its part of the batch, the largest part.
    let localBatch = sampler.map { ($0.globalBatchSize + $0.size - 1) / $0.size } ?? (batchSize + microBatches - 1) / microBatches
    let (ownPlan, planned) = try planOptions.plan(
      for: model, memoryEfficient: memoryEfficient && !planOptions.choosesPlan, batchShape: [localBatch] + train.imageShape,
      classCount: modelOptions.classes ?? train.classCount, reservedBytes: optimizer.stateBytes)
    let plan = try agreedPlan(ownPlan, communicator)
    let mode = planOptions.label(memoryEfficient: memoryEfficient, model: modelOptions.name(for: described))
    let stepsPerEpoch = (train.count + batchSize - 1) / batchSize
    // The schedule spans all epochs; --max-steps only stops early, so a run stopped and resumed
    // follows the same learning rates as one that was not.
    let scheduleSteps = epochs * stepsPerEpoch, totalSteps = min(scheduleSteps, maxSteps ?? .max)
    let warmup = min(warmupSteps, scheduleSteps), annealed = scheduleSteps - warmup
    let after: LearningRateSchedule = switch schedule {
    case .constant: .constant
    case .multistep: .multiStep(milestones: [annealed / 2, annealed * 3 / 4], gamma: 0.1)
    case .cosine: .cosine(totalSteps: annealed, minimum: 0)
    case .cyclicCosine: .cyclicCosine(totalSteps: annealed, cycles: cycles)
    }
    let rates: LearningRateSchedule = warmup > 0 ? .warmup(steps: warmup, then: after) : after
    var state = TrainingCheckpoint(step: 0, dataGenerator: RandomGenerator(seed: seed &+ 1), configuration: runConfiguration(label: label, communicator))
    if let resume {
      state = try TrainingCheckpoint.restore(from: resume, model: model, optimizer: optimizer, configuration: runConfiguration(label: label, communicator))
    }
    // Processes that read other data, or resumed from other files, would train apart; each sees it.
    try communicator?.checkAgreement(
      [train.count, test.count, train.labels.reduce(0) { $0 &* 31 &+ $1 }, totalSteps, state.step],
      names: ["training images", "test images", "a label checksum", "steps", "a resumed step"])
    let augmentation = augment ?? regularized ? Augmentation(cropPadding: train.imageShape[1] >= 32 ? 4 : 2, horizontalFlip: true) : .none
    let progress = isRoot ? Progress(totalSteps: totalSteps, batchSize: batchSize, live: communicator == nil) : nil
    let processes = communicator.map { ", \($0.size) processes\(distributedOptions.syncBatchNorm ? " with synchronized batch norm" : "")" } ?? ""
    if isRoot {
      print("Training \(label) (\(model.parameterCount) parameters, \(mode)\(dtype == .float32 ? "" : ", \(dtype)")) on \(dataOptions.label): "
        + "\(train.count) training and \(test.count) test images, \(totalSteps) steps of \(batchSize)\(processes)")
      if let planned { print(plannedSummary(planned)) }
      fflush(stdout)
    }
    Allocator.resetPeak()
    try withCheckpointPlan(plan, in: model) {
      while state.step < totalSteps {
        let epoch = state.step / stepsPerEpoch
        let order = train.order(epoch: epoch, seed: seed, shuffle: !noShuffle)
        var epochLoss = 0.0, epochCorrect = 0.0, epochImages = 0
        let started = Date()
        progress?.start(afterStep: state.step)
        while state.step < min(totalSteps, (epoch + 1) * stepsPerEpoch) {
          let first = (state.step % stepsPerEpoch) * batchSize
          let indices = Array(order[first..<min(first + batchSize, train.count)])
          let part = sampler?.part(ofBatchOf: indices.count)
          let (images, labels) = train.batch(indices, augmentation: augmentation, using: &state.dataGenerator, part: part)
          optimizer.learningRate = rates.rate(base: lr, step: state.step)
          let metrics = parallel.map {
            // The global batch's loss and accuracy, the same on every process.
            $0.trainStep(
              optimizer: optimizer, images: images.converted(to: dtype), labels: labels, globalBatchSize: indices.count,
              labelSmoothing: labelSmoothing, channelSparsity: sparsity)
          } ?? trainStep(
            model, optimizer: optimizer, images: images.converted(to: dtype), labels: labels, labelSmoothing: labelSmoothing,
            microBatches: min(microBatches, labels.count), channelSparsity: sparsity)
          state.step += 1
          if !allowNonFinite && !metrics.loss.isFinite {
            throw RunError("the loss of step \(state.step) is \(metrics.loss); stopping (lower --lr, or --allow-non-finite to go on)")
          }
          epochLoss += metrics.loss * Double(indices.count)
          epochCorrect += metrics.accuracy * Double(indices.count)
          epochImages += indices.count
          progress?.update(step: state.step, loss: metrics.loss, accuracy: metrics.accuracy)
          if let snapshots, isRoot, let cycle = endedCycle(step: state.step, warmup: warmup, annealed: annealed) {
            let path = URL(fileURLWithPath: snapshots).appendingPathComponent("snapshot-\(cycle).safetensors").path
            try model.saveState(to: path, metadata: architecture?.metadata ?? [:])
            progress?.note("Saved snapshot \(cycle) (step \(state.step)) to \(path)")
          }
        }
        progress?.finish()
        let seconds = Date().timeIntervalSince(started)
        let testMetrics = communicator.map { evaluate(model, on: test, communicator: $0) } ?? evaluate(model, on: test)
        let line = EpochLog(
          epoch: epoch + 1, step: state.step, trainLoss: epochLoss / Double(max(epochImages, 1)),
          trainAccuracy: epochCorrect / Double(max(epochImages, 1)), testLoss: testMetrics.loss, testAccuracy: testMetrics.accuracy,
          seconds: seconds, peakBytes: Allocator.peakBytes)
        if isRoot {
          print(line.text)
          fflush(stdout)
        }
        if !allowNonFinite, let bad = model.namedParameters.first(where: { !$0.variable.value.isFinite }) {
          throw RunError("parameter \(bad.name) holds non-finite values after step \(state.step); stopping (lower --lr, or --allow-non-finite to go on)")
        }
        guard isRoot else { continue }  // Rank 0 alone writes.
        if let log { try line.append(to: log) }
        if let checkpoint { try state.save(to: checkpoint, model: model, optimizer: optimizer, metadata: architecture?.metadata ?? [:]) }
      }
    }
    guard isRoot else { return }
    try model.saveState(to: savePath(label), metadata: architecture?.metadata ?? [:])
    print("Saved the model to \(savePath(label))")
  }

  /// The cycle of the cyclic-cosine schedule (counted from 1) that ends after `step` steps, if one
  /// does: each lasts ⌈annealed / cycles⌉ steps after the warm-up, the last one what is left.
  func endedCycle(step: Int, warmup: Int, annealed: Int) -> Int? {
    let period = max(1, (annealed + cycles - 1) / cycles), done = step - warmup
    guard done > 0, done % period == 0 || done == annealed else { return nil }
    return (done + period - 1) / period
  }

}

/// A run that cannot go on (exit status 1, as opposed to 64 for arguments).
struct RunError: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}
