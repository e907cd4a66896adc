import Foundation
@testable import MilaServe
import Testing
