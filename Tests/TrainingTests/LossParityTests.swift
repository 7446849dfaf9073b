import Foundation
import Testing
import NN
import Torch
@testable import Training

/// The losses against open_clip 3.3.0's own classes: values and gradients from
/// `Scripts/fixtures/loss_fixtures.py` (float32; see the script for what each case compares).
@Suite("Losses against open_clip")
struct LossParityTests {
    static let tolerance = 1e-6
    let f: [String: Tensor]

    init() throws {
        let path = try #require(Bundle.module.path(forResource: "losses", ofType: "safetensors", inDirectory: "Fixtures"))
        f = try SafeTensors.load(path)
    }

    /// A fixture tensor; one-element fixtures come back as scalars.
    func t(_ name: String, scalar: Bool = false) throws -> Tensor {
        let value = try #require(f[name], "fixture \(name) is missing").clone()
        return scalar ? value.reshape([]) : value
    }

    func expectClose(_ ours: Tensor?, _ name: String, _ what: String) throws {
        let ours = try #require(ours, "\(what): no gradient")
        let reference = try t(name)
        #expect(ours.count == reference.count, "\(what): \(ours.shape) vs \(reference.shape)")
        let difference = maxDifference(ours.reshape([-1]), reference.reshape([-1]))
        #expect(difference <= Self.tolerance, "\(what) differs from open_clip by \(difference)")
    }

    @Test(arguments: ["clip_init", "clip_trained"])
    func clipLossMatchesOpenCLIP(_ name: String) throws {
        let image = try t("\(name).image").requiringGrad(), text = try t("\(name).text").requiringGrad()
        let scale = try t("\(name).logit_scale", scalar: true).requiringGrad()
        let loss = clipLoss(imageFeatures: image, textFeatures: text, logitScale: scale)
        loss.backward()
        try expectClose(loss, "\(name).loss", "\(name) loss")
        try expectClose(image.grad, "\(name).grad_image", "\(name) d/d image")
        try expectClose(text.grad, "\(name).grad_text", "\(name) d/d text")
        try expectClose(scale.grad, "\(name).grad_logit_scale", "\(name) d/d logit_scale")
    }

    @Test(arguments: ["siglip_init", "siglip_trained"])
    func sigLIPLossMatchesOpenCLIP(_ name: String) throws {
        let image = try t("\(name).image").requiringGrad(), text = try t("\(name).text").requiringGrad()
        let scale = try t("\(name).logit_scale", scalar: true).requiringGrad()
        let bias = try t("\(name).logit_bias", scalar: true).item(Double.self)
        let siglip = SigLIPLoss(biasInit: bias)
        if name == "siglip_init" {
            // open_clip's init: bias -10, logit_scale ln 10 (the recipe's defaults for siglip).
            #expect(siglip.logitBias.item(Double.self) == -10 && SigLIPLoss().logitBias.item(Double.self) == -10)
            #expect(Swift.abs(scale.item(Double.self) - Foundation.log(10.0)) < 1e-7)
        }
        let loss = siglip(imageFeatures: image, textFeatures: text, logitScale: scale)
        loss.backward()
        try expectClose(loss, "\(name).loss", "\(name) loss")
        try expectClose(image.grad, "\(name).grad_image", "\(name) d/d image")
        try expectClose(text.grad, "\(name).grad_text", "\(name) d/d text")
        try expectClose(scale.grad, "\(name).grad_logit_scale", "\(name) d/d logit_scale")
        try expectClose(siglip.logitBias.grad, "\(name).grad_logit_bias", "\(name) d/d logit_bias")
    }

    /// Our KL at temperature T (× T²) against open_clip's `dist_loss` on logits / T (× T²):
    /// gradients equal; values differ by the teacher's entropy term, which the script computes.
    @Test(arguments: [("distill_T1", 1.0), ("distill_T2", 2.0), ("distill_T0p5", 0.5)])
    func logitDistillationMatchesOpenCLIPsDistillLoss(_ name: String, _ temperature: Double) throws {
        let image = try t("\(name).image").requiringGrad(), text = try t("\(name).text").requiringGrad()
        let scale = try t("\(name).logit_scale", scalar: true).requiringGrad()
        let teacher = contrastiveLogits(try t("\(name).teacher_image"), try t("\(name).teacher_text"),
                                        logitScale: try t("\(name).teacher_logit_scale", scalar: true))
        let student = contrastiveLogits(image, text, logitScale: scale)
        // The case has unequal logits: the loss is far from 0.
        #expect(try t("\(name).loss").item(Double.self) > 0.05)
        let loss = logitDistillationLoss(student: student, teacher: teacher, temperature: temperature)
        loss.backward()
        try expectClose(loss, "\(name).loss", "\(name) KL value")
        let openCLIP = try t("\(name).open_clip_loss").item(Double.self), entropy = try t("\(name).teacher_entropy").item(Double.self)
        #expect(Swift.abs(loss.item(Double.self) + entropy - openCLIP) <= Self.tolerance, "\(name): KL + H(teacher) vs open_clip's cross-entropy")
        try expectClose(image.grad, "\(name).grad_image", "\(name) d/d image")
        try expectClose(text.grad, "\(name).grad_text", "\(name) d/d text")
        try expectClose(scale.grad, "\(name).grad_logit_scale", "\(name) d/d logit_scale")
    }

    @Test(arguments: [("feature_mse", FeatureDistance.mse), ("feature_cosine", FeatureDistance.cosine)])
    func featureDistillationMatchesTorch(_ name: String, _ kind: FeatureDistance) throws {
        let student = try t("\(name).student").requiringGrad()
        let loss = featureDistillationLoss(student: student, teacher: try t("\(name).teacher"), kind: kind)
        loss.backward()
        try expectClose(loss, "\(name).loss", "\(name) value")
        try expectClose(student.grad, "\(name).grad_student", "\(name) d/d student")
    }
}
