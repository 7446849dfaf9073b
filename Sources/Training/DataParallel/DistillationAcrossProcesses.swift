import Foundation
import NN
import Torch

extension DistillationObjective {
    /// The distillation terms of this process's share of micro-batch `i` (`features.image` and
    /// `.text` hold every process's rows, `share` says which are this one's): logit
    /// distillation over its rows against every column (the teacher's embeddings gathered from
    /// every process), feature distillation over its rows alone.
    func sharedDistillationTerms(_ terms: [String: Tensor], target: (image: Tensor, text: Tensor), features: StepFeatures,
                                 share: RowShare, group: any DataParallelGroup) throws -> [String: Tensor] {
        var terms = terms
        if weights.logit > 0 {
            let teacherImages = Tensor.cat(try group.allGatherRows(target.image.contiguous()))
            let teacherTexts = Tensor.cat(try group.allGatherRows(target.text.contiguous()))
            terms["logit_distill_loss"] = logitDistillationLoss(student: (features.image, features.text), teacher: (teacherImages, teacherTexts),
                                                                logitScale: student.encoder.logitScale, teacherScale: teacher.logitScale,
                                                                temperature: weights.temperature, share: share) * weights.logit
        }
        if weights.feature > 0 {
            let image = projections.projectImage(F.normalize(share.select(features.image).to(.float32), dim: -1))
            let text = projections.projectText(F.normalize(share.select(features.text).to(.float32), dim: -1))
            let loss = featureDistillationLoss(student: image, teacher: target.image, kind: weights.featureDistance, share: share)
                + featureDistillationLoss(student: text, teacher: target.text, kind: weights.featureDistance, share: share)
            terms["feature_distill_loss"] = loss * (0.5 * weights.feature)
        }
        return terms
    }
}
