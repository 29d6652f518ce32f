import Training
import XCTest

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
}
