import Autograd
import TensorModule

/// A part of a network: it owns parameters and buffers and may contain named sub-modules.
///
/// Parameters and buffers are listed explicitly by each module (``children``, ``ownParameters``,
/// ``ownBuffers``), in the order and with the names PyTorch gives them; a module held in a stored
/// property that no `children` list reaches is found by reflection and stops the program when the
/// parameters are collected (``unlistedSubmodules``). Names are PyTorch's dotted paths
/// (`features.denseblock1.denselayer1.norm1.weight`), so state files move between Reprise and
/// PyTorch. Modules are classes: layers update their buffers in place and optimisers update
/// parameters in place.
public protocol Module: AnyObject {
  /// Sub-modules by name, in order.
  var children: [(name: String, module: any Module)] { get }
  /// The parameters this module owns itself (not its children's), by name.
  var ownParameters: [(name: String, variable: Variable)] { get }
  /// The buffers (running statistics) this module owns itself, by name.
  var ownBuffers: [(name: String, variable: Variable)] { get }
}

/// A module that maps one value to another.
public protocol Layer: Module {
  /// The layer applied to `input`; training or inference behaviour follows `LearningPhase/current`.
  func callAsFunction(_ input: Variable) -> Variable

  /// The layer applied to `input`, then a ReLU when `applyingReLU`: the same values and gradients
  /// as `relu(layer(input))`. A layer that ends in a batch normalisation computes the ReLU in the
  /// normalisation's own pass, forward and backward (one pass over the output and one stored map
  /// fewer); the default applies `relu` to the output.
  func callAsFunction(_ input: Variable, applyingReLU: Bool) -> Variable

  /// `conv(relu(layer(input)))`: the same values and gradients. A layer that ends in a batch
  /// normalisation computes the normalisation, ReLU and convolution as one pre-activation unit
  /// (``batchNormReLUConv(_:norm:conv:statistics:)``), which normalises as the convolution reads its
  /// input and keeps neither the normalised map nor its ReLU; the default composes the three.
  func callAsFunction(_ input: Variable, followedByReLUAnd conv: Conv2d) -> Variable
}

extension Layer {
  /// `relu(self(input))` when `applyingReLU`, else `self(input)`.
  public func callAsFunction(_ input: Variable, applyingReLU: Bool) -> Variable {
    applyingReLU ? relu(callAsFunction(input)) : callAsFunction(input)
  }

  /// `conv(self(input, applyingReLU: true))`.
  public func callAsFunction(_ input: Variable, followedByReLUAnd conv: Conv2d) -> Variable {
    conv(callAsFunction(input, applyingReLU: true))
  }
}

extension Module {
  /// No sub-modules.
  public var children: [(name: String, module: any Module)] { [] }
  /// No parameters of its own.
  public var ownParameters: [(name: String, variable: Variable)] { [] }
  /// No buffers of its own.
  public var ownBuffers: [(name: String, variable: Variable)] { [] }

  /// Every parameter of this module and its descendants, with dotted names, depth first.
  ///
  /// Every path that trains, saves, loads or converts a module collects its parameters here, so
  /// this is where a sub-module with parameters or buffers that no `children` reaches is caught.
  public var namedParameters: [(name: String, variable: Variable)] {
    let unlisted = unlistedSubmodules
    require(
      unlisted.isEmpty,
      "\(type(of: self)): \(unlisted.joined(separator: ", ")) holds a module with parameters that no `children` list reaches; "
        + "list it in `children`, or its parameters will not train, save or load")
    return collect(\.ownParameters)
  }

  /// Every buffer of this module and its descendants, with dotted names, depth first.
  public var namedBuffers: [(name: String, variable: Variable)] { collect(\.ownBuffers) }

  /// Every parameter, in the order of ``namedParameters``.
  public var parameters: [Variable] { namedParameters.map(\.variable) }

  /// The number of trainable parameter elements (buffers excluded), the convention of the papers.
  public var parameterCount: Int { namedParameters.reduce(0) { $0 + $1.variable.value.count } }

  /// Converts every parameter and buffer to `dtype` (Float64 for gradient checks).
  public func convert(to dtype: DType) {
    for (_, v) in namedParameters + namedBuffers {
      v.value = v.value.converted(to: dtype)
      v.grad = v.grad?.converted(to: dtype)
    }
  }

  /// Clears the gradients of every parameter.
  public func zeroGradients() {
    for p in parameters { p.grad = nil }
  }

  private func collect(_ own: KeyPath<any Module, [(name: String, variable: Variable)]>) -> [(name: String, variable: Variable)] {
    var result: [(name: String, variable: Variable)] = []
    var stack: [(prefix: String, module: any Module)] = [("", self)]
    while let (prefix, module) = stack.popLast() {
      result += module[keyPath: own].map { (prefix + $0.name, $0.variable) }
      stack += module.children.reversed().map { (prefix + $0.name + ".", $0.module) }
    }
    return result
  }
}

/// A parameter: a leaf that requires gradients, named for messages.
func parameter(_ value: Tensor, _ name: String) -> Variable {
  Variable(value, requiresGrad: true, name: name)
}

/// A buffer: a leaf without gradients.
func buffer(_ value: Tensor, _ name: String) -> Variable {
  Variable(value, requiresGrad: false, name: name)
}
