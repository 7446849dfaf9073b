import ArgumentParser
import Foundation
import Torch
import Training

/// WiSE-FT: evaluates interpolations of a zero-shot checkpoint and its fine-tuned self.
@main
struct WiseFT: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wise-ft",
        abstract: "WiSE-FT: evaluate θ = (1 − α)·zero-shot + α·fine-tuned for each α on one or more validation sets.",
        discussion: "Prints a table per set and writes wise_ft.json (every metric of every α and set) and wise_ft.svg (a panel per metric, α across). The best α has the best mean of --metric over the sets (ties: the smaller α). Float tensors are mixed in float32 (the logit scale too); other tensors must be equal in both checkpoints.",
        version: ClipTune.versionLine)

    @Option(name: .customLong("zero-shot"), help: "The zero-shot checkpoint folder (α = 0): the model fine-tuning started from.") var zeroShot: String
    @Option(name: .customLong("fine-tuned"), help: "The fine-tuned checkpoint folder (α = 1), e.g. a run's best/.") var fineTuned: String
    @Option(help: "Comma-separated α values in [0, 1]. Default: 0,0.1,…,1.") var alphas: String?
    @Option(help: "Validation data, repeatable: a shard pattern or a CSV/TSV/JSONL manifest; NAME=PATH names the set (default: its file name).")
    var data: [String] = []
    @Option(help: "Zero-shot classes file ({\"classes\": [...], \"templates\": [...]}); every set's samples then need class labels.") var classes: String?
    @Option(help: "A manifest's image column (JSONL: field). Default: image_path.") var imageColumn = "image_path"
    @Option(help: "A manifest's caption column (JSONL: field). Default: caption.") var captionColumn = "caption"
    @Option(help: "A manifest's column (JSONL: field) of class names, for --classes.") var labelColumn: String?
    @Option(help: "The metric whose mean over the sets picks the best α.") var metric = "image_to_text_R@1"
    @Option(help: "Also write one interpolation as a Hugging Face checkpoint: an α in [0, 1], or `best`. Needs --out.") var save: String?
    @Option(help: "The checkpoint folder --save writes (with the zero-shot checkpoint's tokenizer and preprocessor files).") var out: String?
    @Flag(help: "Let --out replace an earlier checkpoint folder.") var overwrite = false
    @Option(help: "Folder for wise_ft.json and wise_ft.svg. Default: the folder holding --fine-tuned (a run's folder for its best/).")
    var output: String?
    @Option(help: "Samples per batch.") var batchSize = 128
    @Option(help: "Decode threads.") var threads = 2
    @Option(help: "auto, cpu, cuda or cuda:N (auto: the first GPU when there is one).") var device = "auto"

    /// The job these flags describe; a mistake in them is a usage error.
    func job() throws -> WiSEFTJob {
        var job = WiSEFTJob(zeroShot: zeroShot, fineTuned: fineTuned, data: data)
        job.classes = classes
        job.imageColumn = imageColumn
        job.captionColumn = captionColumn
        job.labelColumn = labelColumn
        job.out = out
        job.overwrite = overwrite
        job.output = output
        job.settings.batchSize = batchSize
        job.settings.threads = threads
        do {
            if let alphas { job.settings.alphas = try WiSEFT.parseAlphas(alphas) }
            job.save = try save.map(WiSEFTJob.SaveChoice.parse)
            job.settings.metric = WiSEFTJob.metric(named: metric)
            try job.checkArguments()
        } catch let error as WiSEFTError {
            throw ValidationError(error.message)
        }
        return job
    }

    func validate() throws {
        guard batchSize > 0, threads > 0 else { throw ValidationError("--batch-size and --threads must be positive") }
        guard Device.isWellFormed(device) else { throw ValidationError("--device must be auto, cpu, cuda or cuda:N, found \"\(device)\"") }
        _ = try job()
    }

    func run() throws {
        var job = try job()
        job.settings.device = try Device.parse(device).validated()
        let result = try job.run { FileHandle.standardError.write(Data("\($0)\n".utf8)) }
        print(result.table(), terminator: "")
        let folder = output ?? job.defaultOutput
        print("wrote \(folder)/\(WiSEFTResult.jsonFile) and \(folder)/\(WiSEFTResult.plotFile)")
        if let saved = result.saved { print("saved θ(α = \(String(format: "%g", saved.alpha))) as \(saved.path)") }
    }
}
