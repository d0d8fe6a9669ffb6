extension DatasetKind {
    /// The data set's usual class names (label `i` is element `i`), as its readers give them
    /// when the files carry none; nil for a data set whose names come only from its files.
    public var standardClassNames: [String]? {
        if self == .mnist { return MNISTReader.classNames }
        if self == .cifar10 { return CIFAR10Reader.standardClassNames }
        return nil
    }
}
