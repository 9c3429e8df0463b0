#if canImport(Glibc)
import Glibc
#endif

// mat-bench: Swift vs C reference benchmarks, run through `Tools/bench <suite>`.
let arguments = Array(CommandLine.arguments.dropFirst())
switch arguments {
case ["translate"]:
    runTranslateBenchmarks()
    runLookupBenchmarks()
default:
    print("usage: mat-bench translate")
    exit(2)
}
