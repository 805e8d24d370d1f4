import Foundation
import TensorModule

/// Labelled images held in memory: pixels as bytes (scaled to [0, 1] when batched) or as floats
/// (used exactly as given), with the per-channel normalisation the data set conventionally uses.
public struct Dataset: Sendable {
  /// The pixels of every image, [count, channels, height, width] in row-major order.
  public enum Pixels: Sendable {
    /// 0...255, scaled to [0, 1].
    case bytes([UInt8])
    /// Used as they are.
    case floats([Float])
  }

  /// The pixels.
  public let pixels: Pixels
  /// [channels, height, width] of one image.
  public let imageShape: [Int]
  /// One label per image, in 0..<classCount.
  public let labels: [Int]
  /// The number of classes.
  public let classCount: Int
  /// Per-channel means subtracted after scaling (none when empty).
  public var mean: [Double]
  /// Per-channel standard deviations divided by after subtracting the mean.
  public var standardDeviation: [Double]

  /// A data set from its parts.
  ///
  /// - Throws: ``StateFileError/corrupt(_:_:)`` when the parts do not agree.
  public init(
    pixels: Pixels, imageShape: [Int], labels: [Int], classCount: Int, mean: [Double] = [], standardDeviation: [Double] = [],
    source: String = "data set"
  ) throws {
    let pixelCount: Int
    switch pixels {
    case .bytes(let b): pixelCount = b.count
    case .floats(let f): pixelCount = f.count
    }
    guard imageShape.count == 3, imageShape.allSatisfy({ $0 > 0 }), let size = SafeTensors.checkedProduct(imageShape + [labels.count]),
      pixelCount == size
    else {
      throw StateFileError.corrupt(source, "\(pixelCount) pixel values do not make \(labels.count) images of shape \(imageShape)")
    }
    guard classCount >= 1 else { throw StateFileError.corrupt(source, "a data set needs at least one class, got \(classCount)") }
    if let bad = labels.first(where: { $0 < 0 || $0 >= classCount }) {
      throw StateFileError.corrupt(source, "label \(bad) is outside 0..<\(classCount)")
    }
    (self.pixels, self.imageShape, self.labels, self.classCount) = (pixels, imageShape, labels, classCount)
    (self.mean, self.standardDeviation) = (mean, standardDeviation)
  }

  /// The number of images.
  public var count: Int { labels.count }

  /// The order of one epoch: a permutation of the images drawn from `seed` and `epoch` (so a resumed
  /// run recomputes it), or the identity when not shuffling.
  public func order(epoch: Int, seed: UInt64, shuffle: Bool) -> [Int] {
    var indices = Array(0..<count)
    guard shuffle else { return indices }
    var random = RandomGenerator(seed: seed &+ UInt64(epoch) &* 0x9E37_79B9_7F4A_7C15)
    for i in stride(from: count - 1, to: 0, by: -1) {
      indices.swapAt(i, Int(random.next() % UInt64(i + 1)))
    }
    return indices
  }

  /// A batch of the images at `indices` as a Float32 tensor [B, C, H, W] and their labels, with
  /// `augmentation` applied using `generator`, then normalised.
  ///
  /// - `part`: the positions in `indices` to return, when a process of a distributed run takes
  ///   its part of a global batch; the random draws of the whole batch are made, so the part is
  ///   what a single process would get at those positions and `generator` ends in the same state.
  public func batch(
    _ indices: [Int], augmentation: Augmentation = .none, using generator: inout RandomGenerator, part: Range<Int>? = nil
  ) -> (images: Tensor, labels: [Int]) {
    let (c, h, w) = (imageShape[0], imageShape[1], imageShape[2])
    let size = c * h * w
    let part = part ?? indices.indices
    require(part.lowerBound >= 0 && part.upperBound <= indices.count, "batch: part \(part) of \(indices.count) images")
    var out = [Float](repeating: 0, count: part.count * size)
    let scale = 1 / Float(255)
    for (position, index) in indices.enumerated() {
      let (dy, dx, flip) = augmentation.draw(using: &generator)
      guard part.contains(position) else { continue }
      let b = position - part.lowerBound
      for channel in 0..<c {
        let m = Float(mean.isEmpty ? 0 : mean[channel]), s = Float(standardDeviation.isEmpty ? 1 : standardDeviation[channel])
        for y in 0..<h {
          let sy = y + dy
          for x in 0..<w {
            let sx0 = x + dx, sx = flip ? (w - 1 - x) + dx : sx0
            var value: Float = 0
            if sy >= 0 && sy < h && sx >= 0 && sx < w {
              let p = index * size + (channel * h + sy) * w + sx
              switch pixels {
              case .bytes(let bytes): value = Float(bytes[p]) * scale
              case .floats(let floats): value = floats[p]
              }
            }
            out[b * size + (channel * h + y) * w + x] = (value - m) / s
          }
        }
      }
    }
    return (Tensor(out, shape: [part.count, c, h, w]), indices[part].map { labels[$0] })
  }
}

/// Random training-time transformations of a batch.
public struct Augmentation: Sendable, Equatable {
  /// Zero padding on each side before a random crop back to the original size (0: no crop).
  public var cropPadding: Int
  /// Whether to flip horizontally with probability 1/2.
  public var horizontalFlip: Bool

  /// No augmentation.
  public static let none = Augmentation(cropPadding: 0, horizontalFlip: false)

  /// Augmentation with the given crop padding and flipping.
  public init(cropPadding: Int, horizontalFlip: Bool) { (self.cropPadding, self.horizontalFlip) = (cropPadding, horizontalFlip) }

  /// The vertical and horizontal shift of the crop and whether to flip, for one image.
  func draw(using generator: inout RandomGenerator) -> (Int, Int, Bool) {
    guard cropPadding > 0 || horizontalFlip else { return (0, 0, false) }
    let span = UInt64(2 * cropPadding + 1)
    let dy = cropPadding > 0 ? Int(generator.next() % span) - cropPadding : 0
    let dx = cropPadding > 0 ? Int(generator.next() % span) - cropPadding : 0
    let flip = horizontalFlip && generator.next() & 1 == 1
    return (dy, dx, flip)
  }
}
