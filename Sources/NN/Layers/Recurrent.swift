import Autograd
import TensorModule

/// One step of a GRU (Cho et al. 2014) with PyTorch's gate order and equations:
///
///     r = σ(W_ir x + b_ir + W_hr h + b_hr),  z = σ(W_iz x + b_iz + W_hz h + b_hz)
///     n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),  h' = (1 - z) ⊙ n + z ⊙ h
///
/// `projectedInput` is W_i x + b_i, [batch, 3 · hidden], computed for every step at once by the
/// sequence form.
func gruStep(_ projectedInput: Variable, _ h: Variable, weightHH: Variable, biasHH: Variable) -> Variable {
  let hidden = h.shape[1]
  let x = split(projectedInput, sizes: [hidden, hidden, hidden], alongAxis: 1)
  let g = split(linear(h, weight: weightHH, bias: biasHH), sizes: [hidden, hidden, hidden], alongAxis: 1)
  let r = sigmoid(x[0] + g[0]), z = sigmoid(x[1] + g[1])
  let n = tanh(x[2] + r * g[2])
  return n + z * (h - n)
}

/// One step of an LSTM (Hochreiter and Schmidhuber 1997) with PyTorch's gate order (input,
/// forget, cell, output): c' = f ⊙ c + i ⊙ g, h' = o ⊙ tanh(c').
func lstmStep(_ projectedInput: Variable, _ h: Variable, _ c: Variable, weightHH: Variable, biasHH: Variable) -> (h: Variable, c: Variable) {
  let hidden = h.shape[1]
  let gates = split(projectedInput + linear(h, weight: weightHH, bias: biasHH), sizes: [hidden, hidden, hidden, hidden], alongAxis: 1)
  let (i, f, g, o) = (sigmoid(gates[0]), sigmoid(gates[1]), tanh(gates[2]), sigmoid(gates[3]))
  let cNext = f * c + i * g
  return (o * tanh(cNext), cNext)
}

/// The weights of one recurrent layer: W_ih [gates · hidden, input], W_hh [gates · hidden, hidden]
/// and their biases, initialised U(±1/√hidden) as PyTorch does.
public struct RecurrentWeights {
  /// W_ih.
  public let inputWeight: Variable
  /// W_hh.
  public let hiddenWeight: Variable
  /// b_ih.
  public let inputBias: Variable
  /// b_hh.
  public let hiddenBias: Variable

  init(gates: Int, inputSize: Int, hiddenSize: Int, suffix: String) {
    require(inputSize > 0 && hiddenSize > 0, "recurrent layer: input size \(inputSize) and hidden size \(hiddenSize) must be positive")
    let initializer = Initializer.uniform(bound: 1 / Double(hiddenSize).squareRoot())
    inputWeight = parameter(initializer.tensor([gates * hiddenSize, inputSize]), "weight_ih" + suffix)
    hiddenWeight = parameter(initializer.tensor([gates * hiddenSize, hiddenSize]), "weight_hh" + suffix)
    inputBias = parameter(initializer.tensor([gates * hiddenSize]), "bias_ih" + suffix)
    hiddenBias = parameter(initializer.tensor([gates * hiddenSize]), "bias_hh" + suffix)
  }

  func named(_ suffix: String) -> [(name: String, variable: Variable)] {
    [("weight_ih" + suffix, inputWeight), ("weight_hh" + suffix, hiddenWeight), ("bias_ih" + suffix, inputBias), ("bias_hh" + suffix, hiddenBias)]
  }

  var hiddenSize: Int { hiddenWeight.shape[1] }

  /// W_ih x + b_ih for `input` [..., input size].
  func project(_ input: Variable) -> Variable {
    let shape = input.shape
    require(shape.last == inputWeight.shape[1], "recurrent layer: input \(shape) does not have \(inputWeight.shape[1]) features")
    return linear(input, weight: inputWeight, bias: inputBias)
  }

  /// The layer run over `input` [batch, length, input size] from `initial`: every step's input
  /// projection is one matrix product, then `step` advances the state one position at a time.
  /// Returns every step's `output` of the state, stacked [batch, length, hidden], and the last state.
  func unrolled<State>(
    _ layer: String, _ input: Variable, from initial: @autoclosure () -> State, output: (State) -> Variable,
    step: (Variable, State) -> State
  ) -> (output: Variable, state: State) {
    require(input.shape.count == 3 && input.shape[1] > 0, "\(layer): input \(input.shape) is not [batch, length, features]")
    let inputs = split(project(input), sizes: Array(repeating: 1, count: input.shape[1]), alongAxis: 1)
    var state = initial(), outputs: [Variable] = []
    for x in inputs {
      state = step(squeeze(x, axis: 1), state)
      outputs.append(output(state))
    }
    return (stack(outputs, alongAxis: 1), state)
  }

  /// A zero state for a batch of `batch`, of the input's dtype.
  func zeroState(_ batch: Int, _ like: Variable) -> Variable { Variable(Tensor(zeros: [batch, hiddenSize], dtype: like.dtype)) }
}

/// A GRU cell: one step, PyTorch's `GRUCell` (parameters `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`).
public final class GRUCell: Module {
  /// The cell's weights.
  public let weights: RecurrentWeights

  /// A cell from `inputSize` features to a state of `hiddenSize`.
  public init(inputSize: Int, hiddenSize: Int) { weights = RecurrentWeights(gates: 3, inputSize: inputSize, hiddenSize: hiddenSize, suffix: "") }

  /// The weights, by PyTorch's names.
  public var ownParameters: [(name: String, variable: Variable)] { weights.named("") }

  /// The next state for `input` [batch, input size] and `state` [batch, hidden] (zeros when nil).
  public func callAsFunction(_ input: Variable, _ state: Variable? = nil) -> Variable {
    require(input.shape.count == 2, "GRUCell: input \(input.shape) is not [batch, features]")
    let h = state ?? weights.zeroState(input.shape[0], input)
    return gruStep(weights.project(input), h, weightHH: weights.hiddenWeight, biasHH: weights.hiddenBias)
  }
}

/// An LSTM cell: one step, PyTorch's `LSTMCell`.
public final class LSTMCell: Module {
  /// The cell's weights.
  public let weights: RecurrentWeights

  /// A cell from `inputSize` features to states of `hiddenSize`.
  public init(inputSize: Int, hiddenSize: Int) { weights = RecurrentWeights(gates: 4, inputSize: inputSize, hiddenSize: hiddenSize, suffix: "") }

  /// The weights, by PyTorch's names.
  public var ownParameters: [(name: String, variable: Variable)] { weights.named("") }

  /// The next hidden and cell states for `input` [batch, input size] (zero states when nil).
  public func callAsFunction(_ input: Variable, _ state: (h: Variable, c: Variable)? = nil) -> (h: Variable, c: Variable) {
    require(input.shape.count == 2, "LSTMCell: input \(input.shape) is not [batch, features]")
    let (h, c) = state ?? (weights.zeroState(input.shape[0], input), weights.zeroState(input.shape[0], input))
    return lstmStep(weights.project(input), h, c, weightHH: weights.hiddenWeight, biasHH: weights.hiddenBias)
  }
}

/// A one-layer GRU over batch-first sequences [batch, length, input size], PyTorch's `GRU` with
/// `batch_first=True` (parameters `weight_ih_l0`, ...). The input projection of every step is one
/// matrix product.
public final class GRU: Module {
  /// The layer's weights.
  public let weights: RecurrentWeights

  /// A GRU from `inputSize` features to a state of `hiddenSize`.
  public init(inputSize: Int, hiddenSize: Int) { weights = RecurrentWeights(gates: 3, inputSize: inputSize, hiddenSize: hiddenSize, suffix: "_l0") }

  /// The weights, by PyTorch's names.
  public var ownParameters: [(name: String, variable: Variable)] { weights.named("_l0") }

  /// Every step's state [batch, length, hidden] and the last one [batch, hidden].
  public func callAsFunction(_ input: Variable, initialState: Variable? = nil) -> (output: Variable, state: Variable) {
    weights.unrolled("GRU", input, from: initialState ?? weights.zeroState(input.shape[0], input), output: { $0 }) { x, h in
      gruStep(x, h, weightHH: weights.hiddenWeight, biasHH: weights.hiddenBias)
    }
  }
}

/// A one-layer LSTM over batch-first sequences, PyTorch's `LSTM` with `batch_first=True`.
public final class LSTM: Module {
  /// The layer's weights.
  public let weights: RecurrentWeights

  /// An LSTM from `inputSize` features to states of `hiddenSize`.
  public init(inputSize: Int, hiddenSize: Int) { weights = RecurrentWeights(gates: 4, inputSize: inputSize, hiddenSize: hiddenSize, suffix: "_l0") }

  /// The weights, by PyTorch's names.
  public var ownParameters: [(name: String, variable: Variable)] { weights.named("_l0") }

  /// Every step's hidden state [batch, length, hidden] and the last hidden and cell states.
  public func callAsFunction(
    _ input: Variable, initialState: (h: Variable, c: Variable)? = nil
  ) -> (output: Variable, state: (h: Variable, c: Variable)) {
    weights.unrolled(
      "LSTM", input, from: initialState ?? (weights.zeroState(input.shape[0], input), weights.zeroState(input.shape[0], input)),
      output: \.h
    ) { x, state in
      lstmStep(x, state.h, state.c, weightHH: weights.hiddenWeight, biasHH: weights.hiddenBias)
    }
  }
}
