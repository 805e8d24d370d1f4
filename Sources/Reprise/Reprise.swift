// The umbrella module: `import Reprise` brings in every layer of the library.
@_exported import Autograd
@_exported import Models
@_exported import NN
@_exported import TensorModule
