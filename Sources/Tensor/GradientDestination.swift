import CKernels

/// Where a backward kernel puts an input gradient instead of a new tensor: tensors that hold
/// consecutive runs of the input's channels, each laid out like the input (so a channel-major
/// input, whose strides do not depend on the channel count), with the gradient written over the
/// parts marked `overwriting` and added to the values already in the others (`old + new`, as
/// accumulating a separate gradient would add them). The gradient of a view into a shared buffer
/// of channels then accumulates where each piece keeps its own, without a gradient of the whole
/// view to write, read back and add piece by piece.
public struct GradientDestination {
  /// The parts in channel order: their channels add up to the input's.
  public let parts: [(tensor: Tensor, overwriting: Bool)]

  /// A destination made of `parts`.
  public init(_ parts: [(tensor: Tensor, overwriting: Bool)]) { self.parts = parts }

  /// Stops the program unless the parts tile the channels of `x` [N, C, H, W] (their own strides
  /// may differ from its).
  func check(channels x: Tensor) {
    require(
      x.rank == 4 && parts.allSatisfy { $0.tensor.dtype == x.dtype && $0.tensor.rank == 4 && $0.tensor.shape[0] == x.shape[0] && $0.tensor.shape[2...] == x.shape[2...] }
        && parts.reduce(0) { $0 + $1.tensor.shape[1] } == x.shape[1],
      "multiply: destination parts \(parts.map(\.tensor.shape)) do not tile the channels of \(x.shape) (\(x.dtype))")
  }

  func check(against x: Tensor) {
    let fits = parts.allSatisfy { p in
      p.tensor.dtype == x.dtype && p.tensor.strides == x.strides && p.tensor.rank == 4 && p.tensor.shape[0] == x.shape[0]
        && p.tensor.shape[2...] == x.shape[2...]
    }
    require(
      fits && parts.reduce(0) { $0 + $1.tensor.shape[1] } == x.shape[1],
      "batchNormBackward: destination parts \(parts.map(\.tensor.shape)) (strides \(parts.map(\.tensor.strides))) do not tile "
        + "the input \(x.shape) laid out with strides \(x.strides) (\(x.dtype))")
  }

  /// Per channel of `dy` (laid out like the input): the distance from its elements to the
  /// destination's, and whether the gradient is added there.
  func channelTargets<T: TensorScalar>(_ dy: Tensor, _: T.Type) -> [(offset: Int, adding: Bool)] {
    var targets: [(offset: Int, adding: Bool)] = [], c = 0
    let channelStride = dy.strides[1], base = dy.base(T.self)
    for (tensor, overwriting) in parts {
      for local in 0..<tensor.shape[1] {
        targets.append(((tensor.base(T.self) + local * channelStride) - (base + c * channelStride), !overwriting))
        c += 1
      }
    }
    return targets
  }
}

/// `a * b` (`b` broadcast to `a`'s shape [N, C, H, W]) written over or added to the parts of
/// `destination`, as ``GradientDestination`` describes: the input gradient of a product with a
/// constant (a dropout mask) sent straight to a channel view's pieces. The same bits as the
/// product followed by the accumulation of each part's slice of it (each element rounded to the
/// product, then added), in one pass and without the product's tensor.
public func multiply(_ a: Tensor, _ b: Tensor, into destination: GradientDestination) {
  destination.check(channels: a)
  let bStrides = Shape.broadcastStrides(b.shape, b.strides, to: a.shape)
  let parts = destination.parts.map(\.tensor)
  let perPlane = bStrides[2] == 0 && bStrides[3] == 0 && ([a] + parts).allSatisfy { $0.strides[3] == 1 && $0.strides[2] == $0.shape[3] }
  guard perPlane, a.dtype == b.dtype else {
    // Any other broadcast: the product, then each part's slice of it, as accumulating would.
    let product = a * b
    var first = 0
    for (part, overwriting) in destination.parts {
      let piece = slice(product, first..<first + part.shape[1], alongAxis: 1)
      part.overwrite(with: overwriting ? piece : part + piece)
      first += part.shape[1]
    }
    return
  }
  // Each channel's part and its index there.
  let owners = destination.parts.enumerated().flatMap { i, part in (0..<part.tensor.shape[1]).map { (i, $0) } }
  let (images, channels, plane) = (a.shape[0], a.shape[1], a.shape[2] * a.shape[3])
  func kernel<T: TensorScalar>(_: T.Type) {
    let pa = a.base(T.self), pb = b.base(T.self), bases = parts.map { $0.base(T.self) }
    Parallel.forRanges(images * channels, costPerItem: plane) { range in
      for i in range {
        let (n, c) = (i / channels, i % channels), (p, local) = owners[c], part = parts[p]
        let source = pa + n * a.strides[0] + c * a.strides[1], scale = pb[n * bStrides[0] + c * bStrides[1]]
        let target = bases[p] + n * part.strides[0] + local * part.strides[1]
        scalePlane(source, by: scale, into: target, plane, adding: !destination.parts[p].overwriting)
      }
    }
  }
  a.dtype.dispatch(kernel, kernel)
}

/// `a` written over or added to the parts of `destination`: ``multiply(_:_:into:)`` by one, whose
/// products are the elements of `a` themselves.
func add(_ a: Tensor, into destination: GradientDestination) {
  multiply(a, Tensor(1.0, dtype: a.dtype), into: destination)
}

/// `target[i] = source[i] * scale`, or with `adding`, `target[i] + source[i] * scale`, over `count`
/// elements: each product rounded, then added, as a product followed by an accumulation would.
@inline(__always)
func scalePlane<T: TensorScalar>(
  _ source: UnsafePointer<T>, by scale: T, into target: UnsafeMutablePointer<T>, _ count: Int, adding: Bool
) {
  if adding {
    for j in 0..<count { target[j] = target[j] + source[j] * scale }
  } else {
    for j in 0..<count { target[j] = source[j] * scale }
  }
}

/// Where a convolution's input gradient goes, plane by plane: channel c's plane of image n at
/// `planes[c] + n * imageStrides[c]`, written over or, where `adding[c]`, added to.
struct InputGradientTarget {
  /// The tensor the gradient is written over, when it goes to one.
  let tensor: Tensor?
  let planes: [UnsafeMutablePointer<Float>?], imageStrides: [Int], adding: [UInt8]

  /// The planes of a Float32 tensor with dense planes, written over.
  init(_ t: Tensor) {
    let layout = PlaneLayout(t), channels = t.shape[1]
    tensor = t
    planes = (0..<channels).map { t.base(Float.self) + $0 * layout.channelStride }
    imageStrides = Array(repeating: layout.imageStride, count: channels)
    adding = Array(repeating: 0, count: channels)
  }

  /// The planes of the parts of `destination` (Float32 tensors with dense planes).
  init(_ destination: GradientDestination) {
    tensor = nil
    var planes: [UnsafeMutablePointer<Float>?] = [], imageStrides: [Int] = [], adding: [UInt8] = []
    for (part, overwriting) in destination.parts {
      let layout = PlaneLayout(part)
      for c in 0..<part.shape[1] {
        planes.append(part.base(Float.self) + c * layout.channelStride)
        imageStrides.append(layout.imageStride)
        adding.append(overwriting ? 0 : 1)
      }
    }
    (self.planes, self.imageStrides, self.adding) = (planes, imageStrides, adding)
  }

  /// Transforms the Winograd products of channels `channels` of the images `images` back into their
  /// planes, each multiplied by its factor in `planeScale` [N][C] (by 1 when nil).
  func deliver(
    _ products: UnsafeMutablePointer<Float>, _ tiling: WinogradTiling, images: Range<Int>, channels: Range<Int>,
    scalingPlanes planeScale: UnsafePointer<Float>?, _ g: ConvolutionGeometry, _ scratch: UnsafeMutablePointer<Float>
  ) {
    let first = images.lowerBound, chunk = channels.map { c in planes[c].map { $0 + first * imageStrides[c] } }
    let strides = Array(imageStrides[channels]), adding = Array(adding[channels])
    chunk.withUnsafeBufferPointer { chunk in
      reprise_winograd_output_planes_f32(
        products, channels.count, images.count, g.height, g.width, tiling.tile, tiling.tileCount, chunk.baseAddress, strides,
        adding, planeScale.map { $0 + first * planes.count + channels.lowerBound }, planes.count, scratch)
    }
  }
}
