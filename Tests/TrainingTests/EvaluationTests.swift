import XCTest

@testable import Training

final class EvaluationTests: XCTestCase {
  /// The expected text is what scikit-learn 1.x's `classification_report(y_true, y_pred, zero_division=0)` printed
  /// for the same predictions: classes absent from both truth and predictions are left out, exact halves round to
  /// even (5/8 recall is 0.62).
  func testReportMatchesScikitLearn() {
    let classes = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    let confusion = [
      [0, 0, 0, 0, 0, 0, 4], [0, 0, 0, 0, 0, 0, 4], [0, 0, 5, 0, 0, 0, 3], [0, 0, 0, 0, 0, 0, 0],
      [0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 4],
    ]
    let e = Evaluation(split: "test", loss: 20 * 1.5, classes: classes, confusion: confusion)
    let sklearn = """
                    precision    recall  f1-score   support

             angry       0.00      0.00      0.00         4
           disgust       0.00      0.00      0.00         4
              fear       1.00      0.62      0.77         8
          surprise       0.27      1.00      0.42         4

          accuracy                           0.45        20
         macro avg       0.32      0.41      0.30        20
      weighted avg       0.45      0.45      0.39        20
      """
    func squeeze(_ s: String) -> [String] {
      s.split(separator: "\n").map { $0.split(separator: " ").joined(separator: " ") }.filter { !$0.isEmpty }
    }
    XCTAssertEqual(squeeze(e.report), squeeze(sklearn))
    XCTAssertEqual(e.loss, 1.5)
    XCTAssertEqual(e.accuracy, 0.45)
    XCTAssertEqual(e.rows, 20)
  }

  /// A cross-validation's pooled evaluation sums its folds' counts: the confusion matrices, the original rows'
  /// matrices, the rows per speaker and per augmentation; a fold that does not give one of them (an older one)
  /// leaves the pooled evaluation without it rather than undercounting.
  func testPooledEvaluationSumsTheFoldsCounts() {
    let classes = ["angry", "sad"]
    func part(_ confusion: [[Int]], loss: Double, original: [[Int]], speaker: [String: [Int]], kinds: [String: [Int]])
      -> Evaluation
    {
      var e = Evaluation(split: "test", loss: loss, classes: classes, confusion: confusion)
      e.original = Evaluation.Subset(Evaluation(split: "test", loss: 0, classes: classes, confusion: original))
      (e.bySpeaker, e.byAugmentation) = (speaker, kinds)
      return e
    }
    let a = part(
      [[3, 1], [0, 4]], loss: 2, original: [[1, 0], [0, 1]], speaker: ["s1": [7, 8]],
      kinds: ["original": [2, 2], "noise": [5, 6]])
    let b = part(
      [[2, 2], [1, 1]], loss: 3, original: [[1, 1], [0, 0]], speaker: ["s2": [3, 6]],
      kinds: ["original": [1, 2], "noise": [2, 4]])
    let p = Evaluation.pooled([a, b], split: "pooled test")
    XCTAssertEqual(p.confusion, [[5, 3], [1, 5]])
    XCTAssertEqual(p.rows, 14)
    XCTAssertEqual(p.loss, 5.0 / 14, accuracy: 1e-15)
    XCTAssertEqual(p.original?.confusion, [[2, 1], [0, 1]])
    XCTAssertEqual(p.original?.accuracy, 0.75)
    XCTAssertEqual(p.original?.unweightedAverageRecall, (2.0 / 3 + 1) / 2)
    XCTAssertEqual(p.bySpeaker, ["s1": [7, 8], "s2": [3, 6]])
    XCTAssertEqual(p.byAugmentation, ["original": [3, 4], "noise": [7, 10]])
    var older = b
    (older.bySpeaker, older.original) = (nil, nil)
    let mixed = Evaluation.pooled([a, older], split: "pooled test")
    XCTAssertNil(mixed.bySpeaker)
    XCTAssertEqual(mixed.byAugmentation, p.byAugmentation)
    XCTAssertNil(mixed.original)
  }
}
