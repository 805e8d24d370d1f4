import CKernels

/// How a Winograd convolution cuts a chunk of images into tiles: F(2x2, 3x3) or F(4x4, 3x3), and
/// the chunks and row lengths that go with it.
struct WinogradTiling {
  /// The side of a tile of outputs: 2, F(2x2, 3x3), or 4, F(4x4, 3x3).
  let tile: Int
  /// Tiles per image, images per chunk and the length of a row of a chunk's transformed data (its
  /// tiles, rounded up).
  let tilesPerImage, imagesPerChunk, tileCount: Int
  /// Whether F(4x4, 3x3) takes the planes two images at a time (Winograd.c's mosaics).
  let pairsImages: Bool

  /// The tiling with tiles of `tile` x `tile` outputs of the images of `g`, in chunks of at most
  /// a `minimumChunks`-th of the batch and about `valuesPerChannel` transformed values per channel.
  init(_ g: ConvolutionGeometry, tile: Int, minimumChunks: Int = 4, valuesPerChannel: Int = 4096) {
    self.tile = tile
    tilesPerImage = reprise_winograd_tiles(g.height, g.width, tile)
    pairsImages = reprise_winograd_pairs_images(g.height, g.width, tile) != 0
    // About 4096 transformed values per channel (256 tiles of F(2x2, 3x3)) to a chunk, whole
    // images, and by default at most a quarter of the batch: a chunk's transformed patches take
    // 2.25 to 4 times its share of the input, so with small batches they stay within the input's
    // size (the padded copy the shifted grid would make), and the threads have at least 4 chunks
    // to share.
    imagesPerChunk = max(1, min(g.batch / minimumChunks, valuesPerChannel / (tile + 2) / (tile + 2) / tilesPerImage))
    // Rows a multiple of 8 floats plus 8 more: rows a power of two apart (256 tiles) fall into a
    // quarter of the L1 cache's sets, and the products, which read a column block down 16 to 384
    // rows, then evict their own operands. Planes taken in pairs (4 tiles each) fit too: an odd
    // chunk's 4k tiles round up to 4k + 4.
    tileCount = (imagesPerChunk * tilesPerImage + 7) / 8 * 8 + 8
  }

  /// The forward pass's F(2x2, 3x3) tiling of `g`: chunks of about 4096 transformed values per
  /// channel, and fewer where the layer is wide, so that a chunk's transformed input and its
  /// products, about 1 MiB in all at most, are read back from the L2 cache rather than the L3: the
  /// forward pass writes every position's patches before the products read them, and a chunk of
  /// four 16x16 images of 192 channels and outputs (ShakeNet's second stage) holds 3 MiB of each
  /// (docs/performance.md#wide-forward-chunks).
  static func forward(_ g: ConvolutionGeometry) -> WinogradTiling {
    let rows = g.inputChannels + g.outputChannels
    return WinogradTiling(g, tile: 2, valuesPerChannel: min(4096, max(1024, forwardChunkValues / max(1, rows))))
  }

  /// The transformed values (inputs and products together) a forward chunk holds at most: 1 MiB,
  /// a Zen 4 core's L2 cache; but at least 1024 a channel (64 tiles), over which a chunk's pass
  /// through every position's weights is spread.
  static let forwardChunkValues = 1 << 18

  /// This tiling of `g`'s images in chunks of at most a `minimumChunks`-th of the batch, with its
  /// ``blockBytes``.
  func withChunks(_ g: ConvolutionGeometry, minimumChunks: Int) -> WinogradTiling {
    var tiling = WinogradTiling(g, tile: tile, minimumChunks: minimumChunks)
    tiling.blockBytes = blockBytes
    return tiling
  }

  /// The largest tile the transforms take on planes of `g`: 4 on planes at least 13 wide (whose
  /// tile rows fill half a vector of 8 tiles) and on planes of 2x2 such tiles (taken two images at
  /// a time), else 2.
  static func largestTile(_ g: ConvolutionGeometry) -> Int {
    g.width >= 13 || reprise_winograd_pairs_images(g.height, g.width, 4) != 0 ? 4 : 2
  }

  /// The bytes of a chunk's transformed data that one block holds where a layer is taken in blocks
  /// (see ``blocks(of:facing:)``): half of a 512 KiB L2 cache, the rest left to the other operand
  /// and the weights.
  var blockBytes = 1 << 18

  /// The blocks of a chunk's `rows` channels (or outputs) whose transformed data is computed and
  /// used one block at a time, against `other` rows on the other side of the products: all of them
  /// at once unless their transformed data outgrows ``blockBytes``, and then blocks of that size (16
  /// rows at least) where `other` is at most half a block. A block's transformed data is then read
  /// back from the L2 cache instead of the L3 (SeqResNet's filters, 64 to 384 channels to 8
  /// outputs, and their input gradients; docs/performance.md#cache-sets-and-channel-blocks); the
  /// price is a pass over the narrow side's data per block (other / block of the wide side's size),
  /// which layers wide on both sides do not repay.
  func blocks(of rows: Int, facing other: Int) -> [Range<Int>] {
    let size = blockSize(of: rows, facing: other)
    return stride(from: 0, to: rows, by: size).map { $0..<min($0 + size, rows) }
  }

  /// The rows of the buffers of a convolution between `channels` and `outputs` in either direction:
  /// each side's largest block (one side's data is the patches, the other's the products).
  func blockSizes(_ channels: Int, _ outputs: Int) -> (Int, Int) {
    (blockSize(of: channels, facing: outputs), blockSize(of: outputs, facing: channels))
  }

  /// The rows of the largest of ``blocks(of:facing:)``: what a buffer for one block must hold.
  func blockSize(of rows: Int, facing other: Int) -> Int {
    let block = max(16, blockBytes / (4 * positions * tileCount) / 8 * 8)
    return rows > block && 2 * other <= block ? block : rows
  }

  /// The floats of a chunk's transformed data with `rows` rows: its P matrices, each of `rows` rows
  /// of `tileCount`, `reprise_winograd_stream` floats apart.
  func size(rows: Int) -> Int { positions * reprise_winograd_stream(rows, tileCount) }

  /// The positions of a transformed tile, (tile + 2)^2: the number of products.
  var positions: Int { (tile + 2) * (tile + 2) }

  /// The chunks of a batch of `batch` images.
  func chunks(_ batch: Int) -> Int { (batch + imagesPerChunk - 1) / imagesPerChunk }

  /// The columns of a chunk's products: its tiles, those of an even number of images when the
  /// planes are taken in pairs (an odd chunk's last pair has zeros for its second image).
  func columns(_ images: Int) -> Int { (pairsImages ? (images + 1) / 2 * 2 : images) * tilesPerImage }
}
