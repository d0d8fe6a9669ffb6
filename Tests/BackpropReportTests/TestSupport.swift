import Backprop
import BackpropData
import BackpropTraining
import Foundation
import Testing
import BackpropTestSupport

// MARK: - Data

/// Where the real data sets are: `$BACKPROP_TEST_DATA`, else `../shared/data` beside the package root.
enum TestData {
    static var packageRoot: URL { TestPaths.packageRoot }
    static var root: URL { TestPaths.dataRoot }

    /// The MNIST test set (read once).
    static let mnistTest: Result<LabeledImages, any Error> = Result {
        try Dataset.load(.mnist, from: root, trainingLimit: 0).test
    }
}

func expectSuccess(_ result: ProcessResult, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(result.exited && result.status == 0, "\(result.summary)", sourceLocation: sourceLocation)
}

/// A user error: a normal non-zero exit and exactly one stderr line, `Error: …`, mentioning each of `words`.
func expectUserError(_ result: ProcessResult, mentioning words: [String], sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(result.exited, "the process crashed: \(result.summary)", sourceLocation: sourceLocation)
    #expect(result.status != 0, "expected a failure: \(result.summary)", sourceLocation: sourceLocation)
    let lines = result.stderr.split(separator: "\n", omittingEmptySubsequences: true)
    #expect(lines.count == 1 && lines.first?.hasPrefix("Error: ") == true, "stderr: \(result.stderr)", sourceLocation: sourceLocation)
    for word in words {
        #expect(result.stderr.contains(word), "stderr should mention \"\(word)\": \(result.stderr)", sourceLocation: sourceLocation)
    }
}

// MARK: - An independent decoder: Python's standard library

/// `python3` on the PATH (CI has the system one; nothing beyond the standard library is used).
let python3: URL? = {
    var candidates: [String] = []
    if let path = ProcessInfo.processInfo.environment["BACKPROP_PYTHON3"], !path.isEmpty { candidates.append(path) }
    for folder in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        candidates.append("\(folder)/python3")
    }
    candidates.append("/usr/bin/python3")
    return candidates.lazy.map(URL.init(fileURLWithPath:)).first { FileManager.default.isExecutableFile(atPath: $0.path) }
}()

/// A PNG as Python's standard library reads it (`PythonChecks.decodePNG`).
struct DecodedPNG: Decodable {
    var width: Int
    var height: Int
    var channels: Int
    /// The chunk types in file order.
    var chunks: [String]
    /// The filter types the rows used.
    var filters: [Int]
    /// H x W x C bytes, interleaved.
    var pixels: [UInt8]

    enum CodingKeys: String, CodingKey { case width, height, channels, chunks, filters, pixels }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        width = try c.decode(Int.self, forKey: .width)
        height = try c.decode(Int.self, forKey: .height)
        channels = try c.decode(Int.self, forKey: .channels)
        chunks = try c.decode([String].self, forKey: .chunks)
        filters = try c.decode([Int].self, forKey: .filters)
        pixels = Array(Data(base64Encoded: try c.decode(String.self, forKey: .pixels))!)
    }

    func pixel(_ x: Int, _ y: Int) -> [UInt8] {
        let start = (y * width + x) * channels
        return Array(pixels[start..<(start + channels)])
    }
}

/// What Python's `xml.etree` finds in an SVG or in the report page (`PythonChecks.readXML`).
struct XMLSummary: Decodable {
    struct Image: Decodable { var src: String; var index: Int? }
    struct Table: Decodable { var classes: String; var rows: [[String]] }
    struct Cell: Decodable { var trueClass: Int; var predicted: Int; var text: String; var href: String?
        enum CodingKeys: String, CodingKey { case trueClass = "true", predicted, text, href }
    }
    /// The root element's local name (`svg`, `html`).
    var root: String
    var ids: [String]
    var hrefs: [String]
    var images: [Image]
    var scripts: Int
    /// Attribute values that point outside the file (http:, https:, //…, file:), except xmlns.
    var external: [String]
    var tables: [Table]
    /// The text of every `<text>` element of each `<svg>` (the root first when it is one).
    var svgTexts: [[String]]
    /// The number of points of each `<polyline>`.
    var polylines: [Int]
    /// Confusion-matrix cells (`<g class="cell">`) with their count text and enclosing link.
    var cells: [Cell]
    var viewBox: String?
}

/// Python programs run on the files the report writes: a PNG decoder written from the PNG
/// specification with `zlib` and `struct` only (it checks the signature, every chunk's CRC,
/// the chunk order, the data length and all five filter types), and an XML reader (`xml.etree`).
enum PythonChecks {
    static let decodePNG = #"""
    import base64, json, struct, sys, zlib

    def paeth(a, b, c):
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        return a if pa <= pb and pa <= pc else (b if pb <= pc else c)

    def decode(path):
        data = open(path, "rb").read()
        if data[:8] != b"\x89PNG\r\n\x1a\n":
            raise ValueError(path + ": not a PNG signature")
        pos, chunks, idat, ihdr = 8, [], b"", None
        while pos < len(data):
            if pos + 12 > len(data):
                raise ValueError(path + ": truncated chunk")
            (length,) = struct.unpack(">I", data[pos:pos + 4])
            kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
            (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
            if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
                raise ValueError(path + ": bad CRC in chunk " + kind.decode("latin-1"))
            chunks.append(kind.decode("ascii"))
            if kind == b"IHDR":
                ihdr = struct.unpack(">IIBBBBB", body)
            elif kind == b"IDAT":
                idat += body
            pos += 12 + length
        if not chunks or chunks[0] != "IHDR" or chunks[-1] != "IEND" or "IDAT" not in chunks:
            raise ValueError(path + ": chunks out of order: " + ",".join(chunks))
        width, height, depth, color, method, filtering, interlace = ihdr
        if depth != 8 or color not in (0, 2) or method != 0 or filtering != 0 or interlace != 0:
            raise ValueError(path + ": unsupported IHDR " + str(ihdr))
        channels = 1 if color == 0 else 3
        stride = width * channels
        raw = zlib.decompress(idat)
        if len(raw) != height * (stride + 1):
            raise ValueError(path + ": %d bytes of image data, expected %d" % (len(raw), height * (stride + 1)))
        out, prev, filters = bytearray(), bytearray(stride), set()
        for y in range(height):
            start = y * (stride + 1)
            f, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
            filters.add(f)
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b = prev[i]
                c = prev[i - channels] if i >= channels else 0
                if f == 0: pass
                elif f == 1: line[i] = (line[i] + a) & 255
                elif f == 2: line[i] = (line[i] + b) & 255
                elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
                elif f == 4: line[i] = (line[i] + paeth(a, b, c)) & 255
                else: raise ValueError(path + ": filter type %d" % f)
            out += line
            prev = line
        return {"width": width, "height": height, "channels": channels, "chunks": chunks,
                "filters": sorted(filters), "pixels": base64.b64encode(bytes(out)).decode("ascii")}

    print(json.dumps([decode(p) for p in sys.argv[1:]]))
    """#

    static let readXML = #"""
    import json, sys
    import xml.etree.ElementTree as ET

    def local(tag):
        return tag.rsplit("}", 1)[-1]

    def text(e):
        return "".join(e.itertext()).strip()

    def summarize(path):
        root = ET.parse(path).getroot()   # raises on anything not well-formed
        parents = {child: parent for parent in root.iter() for child in parent}
        out = {"root": local(root.tag), "ids": [], "hrefs": [], "images": [], "scripts": 0, "external": [],
               "tables": [], "svgTexts": [], "polylines": [], "cells": [], "viewBox": root.get("viewBox")}
        for e in root.iter():
            tag = local(e.tag)
            for key, value in e.attrib.items():
                name = local(key)
                if name == "id": out["ids"].append(value)
                if name == "href": out["hrefs"].append(value)
                if not key.startswith("xmlns") and name != "xmlns" and value.strip().lower().startswith(("http:", "https:", "//", "file:")):
                    out["external"].append(name + "=" + value)
            if tag == "script": out["scripts"] += 1
            if tag == "img":
                index = e.get("data-index")
                out["images"].append({"src": e.get("src", ""), "index": int(index) if index is not None else None})
            if tag == "table":
                rows = [[text(c) for c in r if local(c.tag) in ("th", "td")] for r in e.iter() if local(r.tag) == "tr"]
                out["tables"].append({"classes": e.get("class", ""), "rows": rows})
            if tag == "svg":
                out["svgTexts"].append([text(t) for t in e.iter() if local(t.tag) == "text"])
            if tag == "polyline":
                out["polylines"].append(len(e.get("points", "").split()))
            if tag == "g" and e.get("class") == "cell":
                parent = parents.get(e)
                href = None
                if parent is not None and local(parent.tag) == "a":
                    href = parent.get("href")
                label = [t for t in e.iter() if local(t.tag) == "text"]
                out["cells"].append({"true": int(e.get("data-true")), "predicted": int(e.get("data-predicted")),
                                     "text": text(label[0]) if label else "", "href": href})
        return out

    print(json.dumps([summarize(p) for p in sys.argv[1:]]))
    """#

    /// Decodes PNG files with the Python decoder; throws (with Python's message) when one is not a valid PNG.
    static func decode(_ files: [URL], sourceLocation: SourceLocation = #_sourceLocation) throws -> [DecodedPNG] {
        try run(decodePNG, files, as: [DecodedPNG].self, sourceLocation: sourceLocation)
    }

    /// Parses XML files (SVG, the report page) with `xml.etree`; throws when one is not well-formed.
    static func readXML(_ files: [URL], sourceLocation: SourceLocation = #_sourceLocation) throws -> [XMLSummary] {
        try run(readXML, files, as: [XMLSummary].self, sourceLocation: sourceLocation)
    }

    struct Failure: Error, CustomStringConvertible { var description: String }

    private static func run<T: Decodable>(_ program: String, _ files: [URL], as: T.Type, sourceLocation: SourceLocation) throws -> T {
        let python = try #require(python3, "python3 is needed to check the PNG and SVG files independently", sourceLocation: sourceLocation)
        let result = try runProcess(python, ["-c", program] + files.map(\.path))
        guard result.exited, result.status == 0 else { throw Failure(description: "python3: \(result.stderr)") }
        return try JSONDecoder().decode(T.self, from: Data(result.stdout.utf8))
    }
}
