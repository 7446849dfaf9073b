import Foundation

extension Pretrained {
    /// The `model_type` of checkpoints that transformers computes correctly only through the
    /// remote code below. No class of transformers has this type, so `AutoModel.from_pretrained`
    /// without `trust_remote_code=True` raises instead of loading something else.
    public static let remoteCodeModelType = "cliptune-dual-encoder"
    /// The file the remote code is written to, beside the weights.
    public static let remoteCodeFile = "modeling_cliptune.py"
    /// `config.json`'s `auto_map`: which classes of `remoteCodeFile` transformers' Auto classes use.
    public static let remoteCodeAutoMap = [
        "AutoConfig": "modeling_cliptune.CliptuneDualEncoderConfig",
        "AutoModel": "modeling_cliptune.CliptuneDualEncoderModel",
    ]
    public static let remoteCodeArchitecture = "CliptuneDualEncoderModel"

    /// `modeling_cliptune.py`: transformers' `VisionTextDualEncoderModel` with the pooling of
    /// BERT text towers, pooler-less BERT towers and SigLIP's logit bias (tested by
    /// `TransformersRemoteCodeTests`).
    public static let remoteCodeSource = #"""
"""ClipTune's dual encoders in transformers: AutoModel.from_pretrained(folder, trust_remote_code=True).

transformers' VisionTextDualEncoderModel, plus what ClipTune trains and it lacks:
  text_pooling           how a BERT text tower pools: "pooler" (BertModel's tanh(dense([CLS])), as
                         VisionTextDualEncoderModel does), "mean" over the real tokens, or "cls";
                         other text towers always use their own pooler_output ("pooler")
  text_pooler            whether a BERT text tower has pooler weights (text_model.pooler.dense.*)
  logit_bias_init_value  set when the model was trained with SigLIP's sigmoid loss: it then has a
                         learned logit_bias, and logits = exp(logit_scale) * cosine + logit_bias
                         (a pair's probability is sigmoid(logit))
get_image_features / get_text_features compute ClipTune's embeddings (before normalisation).
Config and model share this file: transformers caches a local folder's code by the hash of the
files each class needs, so a separate configuration file would be imported twice and
VisionTextDualEncoderModel would reject its own config. Written by ClipTune; edit it there.
"""
import torch
from torch import nn
from transformers import BertConfig, BertModel, VisionTextDualEncoderConfig, VisionTextDualEncoderModel
from transformers.models.clip.modeling_clip import CLIPOutput


class CliptuneDualEncoderConfig(VisionTextDualEncoderConfig):
    model_type = "cliptune-dual-encoder"

    text_pooling: str = "pooler"
    text_pooler: bool = True
    logit_bias_init_value: float | None = None


class CliptuneDualEncoderModel(VisionTextDualEncoderModel):
    config_class = CliptuneDualEncoderConfig

    def __init__(self, config: CliptuneDualEncoderConfig):
        bert = isinstance(config.text_config, BertConfig)
        if config.text_pooling not in (("pooler", "mean", "cls") if bert else ("pooler",)):
            raise ValueError(f"text_pooling {config.text_pooling!r} is not supported for this text tower")
        if bert and config.text_pooling == "pooler" and not config.text_pooler:
            raise ValueError("text_pooling 'pooler' needs a text tower with pooler weights (text_pooler: true)")
        text_model = BertModel(config.text_config, add_pooling_layer=config.text_pooler) if bert else None
        super().__init__(config, text_model=text_model)
        self.logit_bias = None
        if config.logit_bias_init_value is not None:
            self.logit_bias = nn.Parameter(torch.tensor(float(config.logit_bias_init_value)))

    def get_text_features(self, input_ids, attention_mask=None, position_ids=None, token_type_ids=None, **kwargs):
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        outputs = self.text_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                  return_dict=True, **kwargs)
        hidden = outputs.last_hidden_state
        if self.config.text_pooling == "mean":
            mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
            mask = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        elif self.config.text_pooling == "cls":
            pooled = hidden[:, 0]
        else:
            pooled = outputs.pooler_output
        outputs.pooler_output = self.text_projection(pooled)
        return outputs

    def forward(self, input_ids=None, pixel_values=None, attention_mask=None, position_ids=None, return_loss=None,
                token_type_ids=None, **kwargs):
        vision = self.get_image_features(pixel_values=pixel_values)
        text = self.get_text_features(input_ids, attention_mask, position_ids, token_type_ids)
        image_embeds = nn.functional.normalize(vision.pooler_output, dim=-1)
        text_embeds = nn.functional.normalize(text.pooler_output, dim=-1)
        logits_per_text = text_embeds @ image_embeds.t() * self.logit_scale.exp()
        if self.logit_bias is not None:
            logits_per_text = logits_per_text + self.logit_bias
        loss = None
        if return_loss:
            n = len(logits_per_text)
            if self.logit_bias is not None:  # SigLIP: each pair a binary decision, summed per image
                signs = 2 * torch.eye(n, device=logits_per_text.device) - 1
                loss = -nn.functional.logsigmoid(signs * logits_per_text).sum() / n
            else:  # CLIP: cross-entropy over the batch, both directions
                labels = torch.arange(n, device=logits_per_text.device)
                loss = (nn.functional.cross_entropy(logits_per_text, labels)
                        + nn.functional.cross_entropy(logits_per_text.t(), labels)) / 2
        return CLIPOutput(loss=loss, logits_per_image=logits_per_text.t(), logits_per_text=logits_per_text,
                          text_embeds=text_embeds, image_embeds=image_embeds, text_model_output=text,
                          vision_model_output=vision)

"""#
}
