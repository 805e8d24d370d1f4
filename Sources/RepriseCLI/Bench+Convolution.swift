import ArgumentParser
import Foundation
import Reprise

/// `reprise bench --kernel conv2d`: one convolution's forward pass, its two gradients one at a time,
/// and both at once as a training step takes them (`conv2dBackward`, which shares work between
/// them), each the median of several runs, in time and in GFLOP/s (2 · output elements · C/groups
/// · K² multiply-adds counted as 2 operations each, twice for both gradients), for the geometry of
/// one layer of a model.
struct ConvolutionBenchmark {
  let input: [Int], weight: [Int], stride: Int, padding: Int, groups: Int

  /// The input shape when `--input-size` is not given: ResNet-20's first stage.
  static let defaultInput = [16, 32, 32]

  /// Parses `spec` (O,K,S,P or O,K,S,P,G) for inputs of `shape` [C, H, W] in batches of `batch`, and
  /// checks that the convolution exists, naming what does not fit.
  init(spec: String?, batch: Int, shape: [Int]) throws {
    let text = spec ?? "16,3,1,1"
    let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { Int($0) }
    guard parts.count == 4 || parts.count == 5, case let values = parts.compactMap({ $0 }), values.count == parts.count else {
      throw ValidationError("--convolution must be O,K,S,P or O,K,S,P,G (outputs, kernel size, stride, padding, groups), got '\(text)'")
    }
    let (outputs, kernel, stride, padding, groups) = (values[0], values[1], values[2], values[3], values.count == 5 ? values[4] : 1)
    guard (1...65536).contains(outputs), (1...64).contains(kernel), (1...64).contains(stride), (0...64).contains(padding),
      (1...65536).contains(groups)
    else {
      throw ValidationError("--convolution '\(text)': outputs and groups must be in 1...65536, kernel size and stride in 1...64, padding in 0...64")
    }
    guard shape[0] % groups == 0, outputs % groups == 0 else {
      throw ValidationError("--convolution '\(text)': \(shape[0]) input channels and \(outputs) outputs must both be divisible by \(groups) groups")
    }
    guard shape[1] + 2 * padding >= kernel, shape[2] + 2 * padding >= kernel else {
      throw ValidationError("--convolution '\(text)': a \(kernel)x\(kernel) kernel is larger than the padded \(shape[1])x\(shape[2]) input")
    }
    (input, weight) = ([batch] + shape, [outputs, shape[0] / groups, kernel, kernel])
    (self.stride, self.padding, self.groups) = (stride, padding, groups)
    // The weight and the output (and the gradients, as large) must fit in memory: a larger one would
    // stop the program in the allocator instead of with a message.
    let elements = [weight, output].map { $0.reduce(1) { $0.multipliedReportingOverflow(by: $1).partialValue } }
    let memory = Int(clamping: ProcessInfo.processInfo.physicalMemory) / 8
    guard elements.allSatisfy({ $0 > 0 && $0 <= memory }) else {
      throw ValidationError("--convolution '\(text)': the weight \(weight) or the output \(output) needs more than this machine's memory")
    }
  }

  var output: [Int] {
    conv2dOutputShape(input: input, weight: weight, stride: IntOrPair(stride), padding: IntOrPair(padding), groups: groups)
  }

  /// Multiply-adds of one pass (each gradient has as many as the forward pass), counted as 2 operations.
  var operations: Double { 2 * Double(output.reduce(1, *) * weight[1] * weight[2] * weight[3]) }

  /// The median seconds of `repeats` runs of the forward pass, the input gradient, the weight
  /// gradient and both gradients at once, each after one run to warm up.
  func run(dtype: DType, repeats: Int) -> (forward: Double, inputGradient: Double, weightGradient: Double, gradients: Double) {
    var random = RandomGenerator(seed: 1)
    // The input channel-major, as a training step's feature maps are (convolution outputs).
    let planes = Tensor(randomNormal: [input[1], input[0], input[2], input[3]], dtype: dtype, using: &random)
    let x = permute(planes, [1, 0, 2, 3]), w = Tensor(randomNormal: weight, dtype: dtype, using: &random)
    let (s, p) = (IntOrPair(stride), IntOrPair(padding))
    // The output itself serves as the output gradient: laid out as a training step's gradient is
    // (channel-major), so no call copies it first.
    let dy = conv2d(x, w, stride: s, padding: p, groups: groups)
    func time(_ body: () -> Void) -> Double {
      body()
      return median((0..<repeats).map { _ in seconds(body) })
    }
    return (
      time { _ = conv2d(x, w, stride: s, padding: p, groups: groups) },
      time { _ = conv2dBackwardInput(dy, w, inputShape: input, stride: s, padding: p, groups: groups) },
      time { _ = conv2dBackwardWeight(dy, x, weightShape: weight, stride: s, padding: p, groups: groups) },
      time { _ = conv2dBackward(dy, input: x, weight: w, stride: s, padding: p, groups: groups) }
    )
  }
}

extension Bench {
  func benchConvolution() throws {
    let shape = try modelOptions.parsedInputShape(inputSize, natural: ConvolutionBenchmark.defaultInput)
    let benchmark = try ConvolutionBenchmark(spec: convolution, batch: batchSize, shape: shape)
    let repeats = max(steps, 11), times = benchmark.run(dtype: dtype, repeats: repeats), flops = benchmark.operations
    if json {
      struct Output: Encodable {
        var kernel: String, input: [Int], weight: [Int], stride: Int, padding: Int, groups: Int, output: [Int], dtype: String
        var threads: Int, forwardSecondsMedian: Double, inputGradientSecondsMedian: Double, weightGradientSecondsMedian: Double
        var gradientsSecondsMedian: Double
        var forwardGflops: Double, inputGradientGflops: Double, weightGradientGflops: Double, gradientsGflops: Double
      }
      try printJSON(Output(
        kernel: "conv2d", input: benchmark.input, weight: benchmark.weight, stride: benchmark.stride, padding: benchmark.padding,
        groups: benchmark.groups, output: benchmark.output, dtype: "\(dtype)", threads: Parallel.threadCount,
        forwardSecondsMedian: times.forward, inputGradientSecondsMedian: times.inputGradient,
        weightGradientSecondsMedian: times.weightGradient, gradientsSecondsMedian: times.gradients,
        forwardGflops: flops / times.forward / 1e9, inputGradientGflops: flops / times.inputGradient / 1e9,
        weightGradientGflops: flops / times.weightGradient / 1e9, gradientsGflops: 2 * flops / times.gradients / 1e9))
    } else {
      print(
        "conv2d \(benchmark.input) * \(benchmark.weight), stride \(benchmark.stride), padding \(benchmark.padding), groups \(benchmark.groups)"
          + " -> \(benchmark.output), \(dtype), \(Parallel.threadCount) threads, median of \(repeats):")
      let rows = [
        ("forward", times.forward, flops), ("input gradient", times.inputGradient, flops),
        ("weight gradient", times.weightGradient, flops), ("both gradients", times.gradients, 2 * flops),
      ]
      for (name, t, operations) in rows {
        print("  " + name.padding(toLength: 16, withPad: " ", startingAt: 0) + String(format: "%.5f s  %.1f GFLOP/s", t, operations / t / 1e9))
      }
    }
  }
}
