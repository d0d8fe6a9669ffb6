import Backprop
import BackpropTraining
import Foundation
import Testing

/// `format`/`version` on the JSON files, and reading files written before them.
@Suite("File formats")
struct FileFormatTests {
    static let report = ClassificationReport(labels: [0, 1, 1], predicted: [0, 1, 0], classNames: ["a", "b"])

    @Test("evaluation.json is snake_case with format and version, and reads back")
    func evaluationRoundTrip() throws {
        let data = try JSONEncoder().encode(EvaluationRecord(dataset: "mnist", images: 3, report: Self.report))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["format"] as? String == "backprop-evaluation" && object["version"] as? Int == 1)
        #expect((object["report"] as? [String: Any])?["class_names"] as? [String] == ["a", "b"])
        #expect(camelCaseKeys(in: object).isEmpty)
        #expect(try JSONDecoder().decode(EvaluationRecord.self, from: data).report == Self.report)
    }

    @Test("an evaluation.json written before snake_case (classNames, no format) still reads")
    func olderEvaluation() throws {
        // The shape `backprop evaluate` wrote before this version (keys as the synthesized coder named them).
        let old = """
            {"dataset": "mnist", "images": 3, "report": {"accuracy": 0.6666666666666666, "classNames": ["a", "b"],
             "confusion": [[1, 0], [1, 1]], "correct": 2, "f1": [0.6666666666666666, 0.6666666666666666],
             "precision": [0.5, 1], "recall": [1, 0.5], "support": [1, 2], "total": 3}}
            """
        let record = try JSONDecoder().decode(EvaluationRecord.self, from: Data(old.utf8))
        #expect(record.report == Self.report)
    }

    @Test("a file of another format or a later version is refused, saying so")
    func refused() throws {
        let data = try JSONEncoder().encode(EvaluationRecord(dataset: "mnist", images: 3, report: Self.report))
        var object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        object["version"] = 2
        let newer = try JSONSerialization.data(withJSONObject: object)
        #expect {
            _ = try JSONDecoder().decode(EvaluationRecord.self, from: newer)
        } throws: { error in
            guard case let DecodingError.dataCorrupted(context) = error else { return false }
            return context.debugDescription.contains("\"version\" is 2") && context.codingPath.last?.stringValue == "version"
        }
        object["version"] = 1
        object["format"] = "backprop-training-record"
        let other = try JSONSerialization.data(withJSONObject: object)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(EvaluationRecord.self, from: other) }
        #expect(throws: (any Error).self) { try FileFormat.experiment.check(format: "backprop-model", version: 1) }
        try FileFormat.experiment.check(format: nil, version: nil)
    }

    @Test("experiment.json carries format and version and reads back; a spec of a later version is refused")
    func experiment() throws {
        let mnist = try #require(Experiment.preset(named: "mnist"))
        let data = try JSONSerialization.data(withJSONObject: mnist.jsonObject)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["format"] as? String == "backprop-experiment" && object["version"] as? Int == 1)
        let again = try Experiment(specData: data, source: "mnist.json")
        #expect(again.network == mnist.network && again.options == mnist.options)

        var newer = object
        newer["version"] = 7
        #expect {
            _ = try Experiment(specData: JSONSerialization.data(withJSONObject: newer), source: "x.json")
        } throws: { error in
            (error as? SpecError)?.description.contains("\"version\" is 7") == true
        }
    }
}
