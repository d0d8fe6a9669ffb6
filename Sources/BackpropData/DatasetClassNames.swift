extension DatasetKind {
    /// The data set's usual class names (label `i` is element `i`), as its readers give them
    /// when the files carry none; nil for a data set whose names come only from its files.
    public var standardClassNames: [String]? {
        switch self {
        case .mnist: MNISTReader.classNames
        case .fashionMNIST: MNISTReader.fashionClassNames
        case .cifar10: CIFAR10Reader.standardClassNames
        case .imageFolder: nil
        }
    }
}
