import Foundation
import NN

/// A network's architecture as its state file records it, so that the file alone rebuilds the
/// network: what a pruned network needs, whose layers have widths no command-line option gives.
///
/// ``DenseNet`` and ``ResNet`` with standard convolutions are described; a state file holds the
/// description as JSON under the metadata key ``metadataKey``.
public enum Architecture: Sendable, Equatable {
  /// A DenseNet of this configuration.
  case denseNet(DenseNetConfiguration)
  /// A CIFAR ResNet of this configuration.
  case resNet(ResNetConfiguration)

  /// The metadata key of a state file's architecture.
  public static let metadataKey = "reprise.architecture"

  /// The architecture of `network`, or nil when it is not one this type describes.
  public init?(of network: any Network) {
    switch network {
    case let network as DenseNet: self = .denseNet(network.configuration)
    case let network as ResNet where network.configuration.convolution == .standard: self = .resNet(network.configuration)
    default: return nil
    }
  }

  /// The network, initialised as its type's initialiser does.
  ///
  /// - Throws: ``ModelError`` when the architecture is not valid (``validate()``).
  public func makeNetwork() throws -> any Network {
    try validate()
    switch self {
    case .denseNet(let configuration): return DenseNet(configuration)
    case .resNet(let configuration): return ResNet(configuration)
    }
  }

  /// The number of parameters of the network, computed without building it.
  public var parameterCount: Int {
    switch self {
    case .denseNet(let c):
      let k = c.growthRate, (inputs, final) = c.widths
      var count = c.stem == .cifar ? c.inputChannels * c.initialChannels * 9 : c.inputChannels * c.initialChannels * 49 + 2 * c.initialChannels
      for (b, layers) in c.blocks.enumerated() {
        for i in 0..<layers {
          let s = c.pruning?.layers[b][i].count ?? inputs[b] + i * k
          let w = c.pruning?.bottlenecks?[b][i] ?? c.bottleneckFactor * k
          count += c.bottleneck ? 2 * s + s * w + 2 * w + w * k * 9 : 2 * s + s * k * 9
        }
        if b < c.blocks.count - 1 {
          let width = inputs[b] + layers * k, s = c.pruning?.transitions[b].count ?? width
          count += 2 * s + s * Int((Double(width) * c.compression).rounded(.down))
        }
      }
      let s = c.pruning?.final.count ?? final
      return count + 2 * s + s * c.classCount + c.classCount
    case .resNet(let c):
      var count = c.inputChannels * 16 * 9 + 2 * 16, width = 16
      for (s, out) in [16, 32, 64].enumerated() {
        for b in 0..<c.blocksPerStage {
          let input = b == 0 ? width : out, inner = c.innerWidths?[s * c.blocksPerStage + b] ?? out
          count += 9 * input * inner + 2 * inner + 9 * inner * out + 2 * out
          if let r = c.squeezeReduction { count += 2 * out * (out / r) }
          if b == 0 && (s > 0 || input != out) { count += input * out + 2 * out }
        }
        width = out
      }
      return count + 64 * c.classCount + c.classCount
    }
  }

  /// Throws unless the architecture can be built: every size within bounds that keep the network
  /// within reach of memory, and a pruning that fits it.
  ///
  /// - Throws: ``ModelError``.
  public func validate() throws {
    func check(_ name: String, _ value: Int, _ range: ClosedRange<Int>) throws {
      guard range.contains(value) else { throw ModelError.invalid("\(name) must be in \(range.lowerBound)...\(range.upperBound), got \(value)") }
    }
    func check(_ name: String, _ value: Double, _ valid: Bool) throws {
      guard valid else { throw ModelError.invalid("\(name) \(value) is out of range") }
    }
    switch self {
    case .denseNet(let c):
      try check("growth rate", c.growthRate, 1...4096)
      try check("blocks", c.blocks.count, 1...8)
      for layers in c.blocks { try check("layers per block", layers, 1...1000) }
      try check("bottleneck factor", c.bottleneckFactor, 1...64)
      try check("initial channels", c.initialChannels, 1...4096)
      try check("classes", c.classCount, 1...(1 << 20))
      try check("input channels", c.inputChannels, 1...4096)
      try check("compression", c.compression, c.compression > 0 && c.compression <= 1)
      try check("drop rate", c.dropRate, (0..<1).contains(c.dropRate))
      let (inputs, final) = c.widths
      guard (inputs.dropFirst() + [final]).allSatisfy({ $0 > 0 }) else { throw ModelError.invalid("compression \(c.compression) leaves a block without channels") }
      try c.checkPruning()
    case .resNet(let c):
      try check("blocks per stage", c.blocksPerStage, 1...1000)
      try check("classes", c.classCount, 1...(1 << 20))
      try check("input channels", c.inputChannels, 1...4096)
      try check("final survival", c.finalSurvival, c.finalSurvival > 0 && c.finalSurvival <= 1)
      if let r = c.squeezeReduction { try check("squeeze reduction", r, 1...16) }
      guard c.convolution == .standard else { throw ModelError.invalid("only ResNets of standard convolutions are described, not \(c.convolution.rawValue)") }
      try c.checkPruning()
    }
  }
}

extension Architecture: Codable {
  private enum CodingKeys: String, CodingKey { case family, configuration }

  /// Decodes `{"family": "densenet" | "resnet", "configuration": {...}}`.
  public init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    switch try container.decode(String.self, forKey: .family) {
    case "densenet": self = .denseNet(try container.decode(DenseNetConfiguration.self, forKey: .configuration))
    case "resnet": self = .resNet(try container.decode(ResNetConfiguration.self, forKey: .configuration))
    case let family:
      throw DecodingError.dataCorruptedError(forKey: .family, in: container, debugDescription: "unknown family '\(family)'")
    }
  }

  /// Encodes `{"family": "densenet" | "resnet", "configuration": {...}}`.
  public func encode(to encoder: any Encoder) throws {
    var container = encoder.container(keyedBy: CodingKeys.self)
    switch self {
    case .denseNet(let configuration):
      try container.encode("densenet", forKey: .family)
      try container.encode(configuration, forKey: .configuration)
    case .resNet(let configuration):
      try container.encode("resnet", forKey: .family)
      try container.encode(configuration, forKey: .configuration)
    }
  }
}

extension Architecture {
  /// The state-file metadata that records this architecture.
  public var metadata: [String: String] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    // Encoding plain structs of numbers and strings cannot fail.
    return [Self.metadataKey: String(decoding: try! encoder.encode(self), as: UTF8.self)]
  }

  /// The architecture a state file's `metadata` records, checked (``validate()``), or nil when it
  /// records none.
  ///
  /// - Parameters:
  ///   - metadata: the state file's metadata.
  ///   - path: the file, for error messages.
  /// - Throws: `StateFileError.corrupt` when the record is not a valid architecture.
  public init?(metadata: [String: String], path: String) throws {
    guard let text = metadata[Self.metadataKey] else { return nil }
    do {
      self = try JSONDecoder().decode(Architecture.self, from: Data(text.utf8))
      try validate()
    } catch let error as ModelError {
      throw StateFileError.corrupt(path, "its architecture (\(Self.metadataKey)) is not valid: \(error)")
    } catch let error as DecodingError {
      throw StateFileError.corrupt(path, "its architecture (\(Self.metadataKey)) cannot be read: \(Self.describe(error))")
    }
  }

  /// One line for a decoding error: where in the record, and what.
  private static func describe(_ error: DecodingError) -> String {
    func place(_ path: [any CodingKey]) -> String { path.isEmpty ? "the record" : "'" + path.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".") + "'" }
    switch error {
    case .dataCorrupted(let context): return "\(place(context.codingPath)): \(context.debugDescription)"
    case .keyNotFound(let key, let context): return "\(place(context.codingPath + [key])) is missing"
    case .typeMismatch(let type, let context): return "\(place(context.codingPath)) is not of type \(type)"
    case .valueNotFound(let type, let context): return "\(place(context.codingPath)) has no \(type)"
    @unknown default: return "\(error)"
    }
  }
}
