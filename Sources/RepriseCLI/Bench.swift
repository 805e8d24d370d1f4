import ArgumentParser
import COpenBLAS
import Foundation
import Reprise
import RepriseDistributed

/// `reprise bench`: training steps of a model on random data, or a kernel against the BLAS call it wraps.
struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Time training steps of a model on random data (median step time, images/s, peak memory), or a kernel.")

  enum Kernel: String, ExpressibleByArgument, CaseIterable {
    case matmul, conv2d, allreduce, roundtrip, stream
  }

  @OptionGroup var modelOptions: ModelOptions
  @Option(help: "Start from the model state in this file; a file that records its network (a pruned one, say) needs no model options.")
  var weights: String?

  @Option(help: "Time a kernel instead of a model: \(Kernel.allCases.map(\.rawValue).joined(separator: ", ")).")
  var kernel: Kernel?

  @Option(help: "Images per step.") var batchSize = 64
  @Option(help: "Timed steps (after one warm-up step); the median is reported.") var steps = 5
  @Option(help: "Input size [C, H, W] as C,H,W (default: the model's natural size, 3,32,32 for CIFAR models and 3,224,224 for ImageNet ones).") var inputSize: String?
  @Flag(help: "The model's hand-made checkpoint plan (DenseNet: every dense layer a region over the shared feature buffer; ResNets: every block; SeqResNets: every filter). Off unless given: bench measures the plain step by default, while train uses this plan unless told --no-memory-efficient.")
  var memoryEfficient = false
  @OptionGroup var planOptions: PlanOptions
  @Option(help: "For --kernel conv2d: the convolution as O,K,S,P or O,K,S,P,G (outputs, square kernel size, stride, padding, groups; default 16,3,1,1), on --batch-size inputs of --input-size (default 16,32,32).")
  var convolution: String?
  @Option(
    help: """
      Matrix size M = N = K for --kernel matmul (default \(Bench.defaultSize)); Float32 elements summed across the processes \
      for --kernel allreduce (with --distributed; default \(Bench.defaultSize)); Float32 elements of each tensor for --kernel stream (default \
      \(Bench.defaultStreamElements), 64 MiB).
      """)
  var size: Int?
  @OptionGroup var threadOptions: ThreadOptions
  @Option(
    help: """
      Also time --steps steps (or passes of --kernel stream, or products of --kernel matmul) on this many threads, taking \
      turns with --threads in turns of up to \(Bench.stepsPerTurn) (each after an untimed one), and report their median \
      and the speedup of --threads over it: a scaling measured while both counts meet the same load on the machine.
      """)
  var compareThreads: Int?

  /// `--size` for --kernel matmul and allreduce when it is not given (--kernel stream has
  /// ``defaultStreamElements``).
  static let defaultSize = 1024

  /// "1 thread", "2 threads".
  static func threadsLabel(_ count: Int) -> String { "\(count) thread\(count == 1 ? "" : "s")" }

  /// The timed steps of one turn with --compare-threads: a second or two of ResNet-20's steps,
  /// short beside the minutes over which the machine's load changes.
  static let stepsPerTurn = 5
  @Option(help: "Element type of the model and data: float32 or float64.") var dtype: DType = .float32
  @Flag(help: "Print one JSON object instead of text.") var json = false
  @OptionGroup(title: "Distributed training (--batch-size is the global batch)") var distributedOptions: DistributedOptions

  func validate() throws {
    if let weights { try readable("--weights", weights) }
    try check("--batch-size", batchSize, in: 1...maximumBatchSize)
    try check("--steps", steps, in: 1...1_000_000)
    if let size { try check("--size", size, in: 1...(kernel == .allreduce ? 1 << 30 : kernel == .stream ? 1 << 28 : 16384)) }
    guard kernel != .allreduce || distributedOptions.distributed else { throw ValidationError("--kernel allreduce needs --distributed") }
    if memoryEfficient && planOptions.choosesPlan {
      throw ValidationError("--memory-efficient is a plan of its own; drop it or --memory-budget / --checkpoint-segments")
    }
    if kernel == .conv2d {
      let shape = try modelOptions.parsedInputShape(inputSize, natural: ConvolutionBenchmark.defaultInput)
      try modelOptions.checkBatch(batchSize, shape, dtype: dtype)
      _ = try ConvolutionBenchmark(spec: convolution, batch: batchSize, shape: shape)
    } else {
      try modelOptions.checkBatch(batchSize, try modelOptions.parsedInputShape(inputSize))
    }
    guard convolution == nil || kernel == .conv2d else { throw ValidationError("--convolution is for --kernel conv2d") }
    if let compareThreads {
      try check("--compare-threads", compareThreads, in: 1...256)
      guard kernel == nil || kernel == .stream || kernel == .matmul, !distributedOptions.distributed else {
        throw ValidationError(
          "--compare-threads times a model's steps, --kernel stream or --kernel matmul in one process; drop --distributed and other kernels")
      }
    }
    try distributedOptions.check()
  }

  func run() throws {
    let communicator = try distributedOptions.communicator()
    threadOptions.apply(sharingCoresWith: communicator.map(localProcessCount) ?? 1)
    if kernel == .matmul { return try benchMatmul() }
    if kernel == .conv2d { return try benchConvolution() }
    if kernel == .roundtrip { return try benchRoundTrip() }
    if kernel == .stream { return try benchStream() }
    if kernel == .allreduce, let communicator { return try benchAllreduce(communicator) }
    let state = try weights.map(SavedModel.init)
    let (model, shape, classes) = try modelOptions.makeForRandomData(inputSize: inputSize, state: state)
    model.convert(to: dtype)
    let optimizer = SGD(model.parameters, learningRate: 0.1, momentum: 0.9, weightDecay: 1e-4, nesterov: true)
    let sampler = try communicator.map { try ShardedSampler(count: batchSize, globalBatchSize: batchSize, rank: $0.rank, size: $0.size) }
    let part = sampler?.part(ofBatchOf: batchSize) ?? 0..<batchSize
    let parallel = try communicator.map { try distributedOptions.trainer(model, $0) }
    let (ownPlan, planned) = try planOptions.plan(
      for: model, memoryEfficient: memoryEfficient, batchShape: [part.count] + shape, classCount: classes,
      reservedBytes: optimizer.stateBytes)
    let plan = try agreedPlan(ownPlan, communicator)
    var random = RandomGenerator(seed: 1)
    let images = slice(Tensor(randomNormal: [batchSize] + shape, dtype: dtype, using: &random), part, alongAxis: 0).contiguous()
    let labels = Array((0..<batchSize).map { _ in Int(random.next() % UInt64(classes)) }[part])
    let base = Allocator.liveBytes
    Allocator.resetPeak()
    var times: [Double] = [], compared: [Double] = [], waits: [Double] = [], hidden: [Double] = []
    var work = PoolWork(threads: 0), comparedWork = PoolWork(threads: 0)
    let threads = Parallel.threadCount
    try withCheckpointPlan(plan, in: model) {
      (times, compared, work, comparedWork) = timedInTurns(passes: steps) { timed, comparing in
        if let parallel {
          parallel.trainStep(optimizer: optimizer, images: images, labels: labels, globalBatchSize: batchSize)
        } else {
          trainStep(model, optimizer: optimizer, images: images, labels: labels)
        }
        if timed && !comparing { (waits, hidden) = (waits + [parallel?.lastReductionWait ?? 0], hidden + [parallel?.lastHiddenFraction ?? 0]) }
      }
    }
    let m = median(times), peak = Allocator.peakBytes - base
    let comparison = threadComparison(compared, against: m)
    let pool = PoolSummary(work: work, steps: times.count), comparedPool = comparison.map { _ in PoolSummary(work: comparedWork, steps: compared.count) }
    let mode = planOptions.label(memoryEfficient: memoryEfficient, model: modelOptions.name(for: state))
    let rss = peakResidentBytes()
    // Every process's peak, for rank 0 to report.
    let residentPerProcess = communicator?.allgather([rss]).map { $0[0] } ?? [rss]
    guard communicator?.isRoot ?? true else { return }
    let processes = communicator?.size ?? 1
    if json {
      struct Output: Encodable {
        var model: String, batchSize: Int, memoryEfficient: Bool, keptBottleneckFraction: Double, plan: String, regions: Int
        var memoryBudgetBytes: Int?, plannedPeakBytes: Int?
        var threads: Int, dtype: String, parameters: Int, stepSecondsMedian: Double, stepSecondsMin: Double
        /// Every timed step in order, for the spread the median hides.
        var stepSeconds: [Double]
        var imagesPerSecond: Double, peakBytes: Int, peakResidentBytes: Int
        var processes: Int, syncBatchNorm: Bool, gradientOverlap: String?, reductionWaitSecondsMedian: Double?
        var reductionHiddenFractionMedian: Double?
        var peakResidentBytesPerProcess: [Int]
        /// With --compare-threads: its thread count, its steps' median and every step, and the
        /// speedup of --threads over it (the ratio of the medians).
        var compareThreads: Int?, compareStepSecondsMedian: Double?, compareStepSeconds: [Double]?, speedup: Double?
        /// The seconds each thread worked in a step, their share of the threads' time, the share of
        /// indices taken from another thread's share, and the share of the time the calling thread
        /// waited at the ends of jobs (Parallel.measuringWork).
        var busySecondsPerStep: [Double], busyFraction: Double, takenIndexFraction: Double, callerWaitFraction: Double
        /// With --compare-threads: the same on its count, and the ratio of all threads' seconds in
        /// jobs a step on --threads to those on it: how much longer the same work took.
        var compareBusySecondsPerStep: [Double]?, compareBusyFraction: Double?, busyTimeRatio: Double?
      }
      try printJSON(Output(
        model: modelOptions.networkLabel(for: state), batchSize: batchSize, memoryEfficient: memoryEfficient,
        keptBottleneckFraction: planOptions.keptBottleneckFraction, plan: mode, regions: plan.regions.count,
        memoryBudgetBytes: planned?.budgetBytes, plannedPeakBytes: planned?.predictedPeakBytes, threads: Parallel.threadCount,
        dtype: "\(dtype)", parameters: model.parameterCount, stepSecondsMedian: m, stepSecondsMin: times.min()!, stepSeconds: times,
        imagesPerSecond: Double(batchSize) / m, peakBytes: peak, peakResidentBytes: rss, processes: processes,
        syncBatchNorm: distributedOptions.syncBatchNorm, gradientOverlap: parallel.map { $0.overlap.rawValue },
        reductionWaitSecondsMedian: parallel.map { _ in median(waits) }, reductionHiddenFractionMedian: parallel.map { _ in median(hidden) },
        peakResidentBytesPerProcess: residentPerProcess, compareThreads: comparison?.threads,
        compareStepSecondsMedian: comparison?.median, compareStepSeconds: comparison?.runs, speedup: comparison?.speedup,
        busySecondsPerStep: pool.busySecondsPerStep, busyFraction: pool.work.busyFraction, takenIndexFraction: pool.work.takenFraction,
        callerWaitFraction: pool.work.waitingFraction,
        compareBusySecondsPerStep: comparedPool?.busySecondsPerStep, compareBusyFraction: comparedPool?.work.busyFraction,
        busyTimeRatio: comparedPool.flatMap { pool.busyTimeRatio(to: $0) }))
    } else {
      let distributed = parallel.map {
        ", \(processes) processes (gradient overlap \($0.overlap.rawValue)\($0.synchronizesBatchNorm ? ", synchronized batch norm" : ""))"
      } ?? ""
      print("\(modelOptions.networkLabel(for: state)), batch \(batchSize), input \(shape), \(mode), \(dtype), \(Parallel.threadCount) threads\(distributed)")
      if let planned { print(plannedSummary(planned)) }
      print(String(format: "  median step %.4f s (min %.4f s, %d steps), %.1f images/s", m, times.min()!, steps, Double(batchSize) / m))
      if let comparison {
        print(String(
          format: "  median step on %@, in turn: %.4f s; %@ are %.2fx as fast", Bench.threadsLabel(comparison.threads), comparison.median,
          Bench.threadsLabel(threads), comparison.speedup))
      }
      print(String(
        format: "  threads worked %.1f%% of their time, %.4f s a step in all; the caller waited %.1f%% at jobs' ends; %.1f%% of indices taken",
        100 * pool.work.busyFraction, pool.totalBusySecondsPerStep, 100 * pool.work.waitingFraction, 100 * pool.work.takenFraction))
      if let comparison, let comparedPool, let ratio = pool.busyTimeRatio(to: comparedPool) {
        print(String(
          format: "  on %@, in turn: threads worked %.1f%% of their time, %.4f s a step; on %@ the same work took %.2fx as long",
          Bench.threadsLabel(comparison.threads), 100 * comparedPool.work.busyFraction, comparedPool.totalBusySecondsPerStep,
          Bench.threadsLabel(threads), ratio))
      }
      if parallel != nil {
        print(String(format: "  after backward: %.0f%% of the gradient bytes reduced (median), median wait for the rest %.4f s", 100 * median(hidden), median(waits)))
      }
      print(String(format: "  peak tensor memory %.1f MiB, peak resident memory %.1f MiB", Double(peak) / 1_048_576, Double(rss) / 1_048_576)
        + (processes > 1 ? " (rank 0; per rank: " + residentPerProcess.map { String(format: "%.1f", Double($0) / 1_048_576) }.joined(separator: ", ") + " MiB)" : ""))
    }
  }

  /// `--kernel matmul`: a square product by a direct `cblas_sgemm` call on OpenBLAS's own threads,
  /// and by `matmul`, which keeps OpenBLAS single-threaded and splits the product across the
  /// kernels' thread pool. With `--compare-threads N`, `matmul` takes turns on both thread counts as
  /// a model's steps do: a product bound by the multiply-add units alone, so its speedup is what the
  /// host gives a second core's arithmetic in those minutes, the ceiling for a step's.
  func benchMatmul() throws {
    let n = size ?? Bench.defaultSize
    var random = RandomGenerator(seed: 1)
    let a = Tensor(randomNormal: [n, n], using: &random), b = Tensor(randomNormal: [n, n], using: &random)
    let lhs = a.scalars(as: Float.self), rhs = b.scalars(as: Float.self)
    var out = [Float](repeating: 0, count: n * n)
    // Switching OpenBLAS's thread count between calls slows both sides, so each side runs its
    // repetitions in one block.
    let direct = {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blasint(n), blasint(n), blasint(n), 1, lhs, blasint(n), rhs, blasint(n), 0, &out, blasint(n))
    }
    let api = { _ = matmul(a, b) }
    let repeats = max(steps, 11)
    openblas_set_num_threads(Int32(Parallel.threadCount))
    direct()
    let directTimes = (0..<repeats).map { _ in seconds(direct) }
    openblas_set_num_threads(1)
    let (apiTimes, compared, work, comparedWork) = timedInTurns(passes: repeats, api)
    let d = median(directTimes), t = median(apiTimes), flops = 2 * pow(Double(n), 3)
    let comparison = threadComparison(compared, against: t)
    let pool = PoolSummary(work: work, steps: apiTimes.count), comparedPool = comparison.map { _ in PoolSummary(work: comparedWork, steps: compared.count) }
    if json {
      struct Output: Encodable {
        var kernel: String, size: Int, threads: Int, directSecondsMedian: Double, tensorSecondsMedian: Double, ratio: Double, tensorGflops: Double
        /// With --compare-threads: its thread count, `matmul`'s median and every call on it, and the
        /// speedup of --threads over it (the ratio of the medians).
        var compareThreads: Int?, compareTensorSecondsMedian: Double?, compareTensorSeconds: [Double]?, speedup: Double?
        /// With --compare-threads: the share of the threads' time `matmul`'s jobs took on each count,
        /// and how much longer the same blocks took on --threads than on it (as for a model's steps).
        var busyFraction: Double?, compareBusyFraction: Double?, busyTimeRatio: Double?
      }
      try printJSON(Output(
        kernel: "matmul", size: n, threads: Parallel.threadCount, directSecondsMedian: d, tensorSecondsMedian: t, ratio: t / d,
        tensorGflops: flops / t / 1e9, compareThreads: comparison?.threads, compareTensorSecondsMedian: comparison?.median,
        compareTensorSeconds: comparison?.runs, speedup: comparison?.speedup, busyFraction: comparedPool.map { _ in pool.work.busyFraction },
        compareBusyFraction: comparedPool?.work.busyFraction, busyTimeRatio: comparedPool.flatMap { pool.busyTimeRatio(to: $0) }))
    } else {
      print("matmul \(n)x\(n)x\(n), \(Parallel.threadCount) threads, median of \(directTimes.count):")
      print(String(format: "  cblas_sgemm direct  %.5f s  %.1f GFLOP/s", d, flops / d / 1e9))
      print(String(format: "  Tensor matmul       %.5f s  %.1f GFLOP/s  (%.3f x direct)", t, flops / t / 1e9, t / d))
      if let comparison {
        print(String(
          format: "  Tensor matmul on %@, in turn: %.5f s, %.1f GFLOP/s; %@ are %.2fx as fast", Bench.threadsLabel(comparison.threads),
          comparison.median, flops / comparison.median / 1e9, Bench.threadsLabel(Parallel.threadCount), comparison.speedup))
      }
    }
  }
}

extension Bench {
  /// The sum of `size` Float32 elements across the processes, as the gradient reduction makes it
  /// without overlap: the median of at least 11 calls after a barrier, and the bus bandwidth
  /// (2 (p - 1) / p of the bytes per process, the traffic of a ring allreduce).
  func benchAllreduce(_ communicator: Communicator) throws {
    let size = self.size ?? Bench.defaultSize
    var random = RandomGenerator(seed: UInt64(communicator.rank))
    var tensor = Tensor(randomNormal: [size], using: &random)
    communicator.allreduce(&tensor)
    let times = (0..<max(steps, 11)).map { _ in
      communicator.barrier()
      return seconds { communicator.allreduce(&tensor) }
    }
    var slowest = [median(times)]
    communicator.allreduce(&slowest)  // the sum over processes, for their mean
    guard communicator.isRoot else { return }
    let t = slowest[0] / Double(communicator.size), bytes = Double(size * 4), p = Double(communicator.size)
    let bandwidth = 2 * (p - 1) / p * bytes / t
    if json {
      struct Output: Encodable { var kernel: String, elements: Int, processes: Int, secondsMedian: Double, busBytesPerSecond: Double }
      try printJSON(Output(kernel: "allreduce", elements: size, processes: communicator.size, secondsMedian: t, busBytesPerSecond: bandwidth))
    } else {
      print("allreduce of \(size) Float32 elements (\(String(format: "%.2f", bytes / 1_048_576)) MiB) across \(communicator.size) processes:")
      print(String(format: "  median %.6f s (mean over processes), bus bandwidth %.2f GB/s", t, bandwidth / 1e9))
    }
  }
}

/// The peak resident set size of this process in bytes (getrusage).
func peakResidentBytes() -> Int {
  var usage = rusage()
  getrusage(RUSAGE_SELF.rawValue, &usage)
  return usage.ru_maxrss * 1024
}

/// The largest `--batch-size` any command takes: far above what memory holds for any model here,
/// and far below where the sizes it multiplies could overflow.
let maximumBatchSize = 1 << 20
