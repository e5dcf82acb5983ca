"""personakit: composable building blocks for personalizing language models.

The top level holds what a user composes: the data model and configs, the components of
every family (modules, losses, retrievers, graph layers, facets, LLM backends), the
models, trainers and recipes, the dataset readers, the metrics and the backbone loaders
(``from personakit import Persona, StyleExtractor, PostGRAG``). Helpers and constants
stay in their sub-package (``from personakit.backbones import file_lock``); every
sub-package's ``__all__`` is importable from it.

Imports are lazy (:mod:`personakit._lazy`): ``import personakit`` does not import torch,
torch_geometric, sentence_transformers or peft; each name is imported on first use.
"""

from __future__ import annotations

from personakit._lazy import attach as _attach

__version__ = "0.1.0"

# sub-package -> the names re-exported at the top level (a curated subset of its __all__)
_PUBLIC: dict[str, tuple[str, ...]] = {
    "config": ("BaseConfig", "ConfigError", "Registry"),
    "types": (
        "AttributeValue", "Persona", "Turn", "Dialogue", "ProfileItem", "UserProfile", "ResponseExample",
        "ProfileExample",
    ),
    "backbones": (
        "BackboneNotFoundError", "EmbeddedModelNotInstalled", "EmbeddedModelStatus", "LoraSettings",
        "install_embedded", "list_embedded", "load_causal_lm", "load_embedded", "load_encoder",
        "load_sentence_encoder", "load_seq2seq_lm",
    ),
    "data": (
        "DataFormatError", "LampTask", "CoPersonaUsers", "PFGLaMPConfig", "PFGQuestionerConfig",
        "read_dataset", "read_spc_jsonl", "read_spc_csv", "read_convai2", "read_empathetic_dialogues",
        "read_persuasion_for_good", "read_pfg_info", "read_lamp", "read_lamp_outputs", "read_mqdialog",
        "read_review_histories", "load_builtin_corpus", "dialogues_to_examples", "build_pfg_lamp_task",
        "build_pfg_questioner_task", "build_pfg_users", "build_review_users",
    ),
    "eval": (
        # metric classes and their configs / outputs
        "Metric", "TextMetric", "Rouge", "RougeConfig", "BLEU", "BLEUConfig", "CHRF", "CHRFConfig", "CharF1",
        "CharF1Config", "Meteor", "MeteorConfig", "BERTScore", "BERTScoreConfig", "BERTScoreOutput", "Accuracy",
        "MacroF1", "MAE", "RMSE", "LaMPEval", "ReplyStats", "SignificanceResult", "PairedComparison",
        # functional metrics and significance tests
        "rouge", "bleu", "chrf", "char_f1", "meteor", "bertscore", "accuracy", "macro_f1", "mae", "rmse",
        "bits_per_character", "model_bits_per_character", "lamp_accuracy", "lamp_rouge1", "lamp3_score",
        "reply_stats", "paired_bootstrap", "paired_ttest", "mcnemar", "paired_comparison",
        # scoring files and tables, extending the registry
        "LoadedPredictions", "PredictionFileError", "evaluate_texts", "evaluate_per_example", "evaluate_file",
        "load_predictions", "load_prediction_groups",
        "format_metrics_table", "register_metric",
        # the pairwise LLM judge
        "PairwiseJudge", "PairwiseJudgeConfig", "PairwiseVerdict", "PairJudgement", "JudgeResult",
        "JudgeQuestionResult", "judge_pairs",
    ),
    "llm": (
        "ChatMessage", "Prompt", "GenerationSettings", "GenerationError", "TextGenerator", "HFGenerator",
        "CallableGenerator", "OpenAICompatibleGenerator", "ResponseCache", "CachedGenerator",
        "generate_structured", "StructuredOutputError",
    ),
    "augment": (
        "AugmentStats", "AugmentTemplate", "GenericResponseAugmenter", "GenericResponseAugmenterConfig",
        "load_template", "load_examples", "save_examples",
    ),
    "modules": (
        "StyleExtractor", "StyleExtractorConfig", "concat_masked", "StyleEnhancedDecoder", "StyleInjectionLayer",
        "BartStyleDecoder", "T5StyleDecoder", "EncoderDecoderStyleDecoder", "CausalStyleDecoder",
        "wrap_style_decoder", "register_style_decoder", "LowRankSpecificEncoder", "LowRankSpecificEncoderConfig",
        "LowRankFeedForward", "SpecificBlock", "SpecificStreamLayer", "MultiViewProjector",
        "MultiViewProjectorConfig", "QuestionClusterer", "QuestionClustererConfig", "SoftPromptProjector",
        "SoftPromptProjectorConfig", "SoftPromptCache", "prepend_soft_prompt",
    ),
    "losses": (
        "BaseLoss", "LossOutput", "CJEPALoss", "CJEPALossConfig", "CJEPALossOutput", "QuestionerContrastiveLoss",
        "QuestionerContrastiveLossConfig", "QuestionerContrastiveLossOutput", "ROPGRLLoss", "ROPGRLLossConfig",
        "ROPGRLLossOutput", "ROPGKDLoss", "ROPGKDLossConfig", "ROPGKDLossOutput", "SelectorKLLoss",
        "SelectorKLLossConfig", "SelectorKLLossOutput",
    ),
    "retrieval": (
        "Retriever", "IndexedProfile", "RetrievedItem", "BM25Retriever", "BM25Config", "RecencyRetriever",
        "RecencyConfig", "DenseRetriever", "DenseConfig", "NoRetrieval", "NoRetrievalConfig", "RRFRetriever",
        "RRFConfig", "get_retriever", "register_retriever", "TextEncoder", "CallableEncoder",
        "SentenceTransformerEncoder", "MeanPoolingEncoder", "RetrieverSelector", "RetrieverSelectorConfig",
        "SelectionResult", "LaMPPromptBuilder", "LaMPPromptConfig", "LaMPTemplate", "register_lamp_template",
    ),
    "graph": (
        "MultiplexGraph", "build_multiplex_graph", "update_multiplex_graph", "MonotoneGate", "MonotoneGateConfig",
        "FacetGraph", "FacetGraphConfig",
    ),
    "facets": (
        "FacetSpec", "FacetSchema", "FacetSchemaInducer", "FacetSchemaInducerConfig", "FacetSummary", "UserFacets",
        "SummarizeStats", "FacetSummarizer", "FacetSummarizerConfig", "FacetEmbeddings", "FacetEmbedder",
        "embed_facets", "SchemaGuidedGenerator",
    ),
    "models": (
        "PersonaModel", "PersonaModelConfig", "PersonaModelOutput", "ICLPromptBuilder", "ICLPromptBuilderConfig",
        "ICLResponder", "ICLResponderConfig", "GRAGConfig", "GRAGOutput", "GRAGModel", "GRAGCollator", "PreSFT",
        "PreGRAG", "PostGRAG", "build_grag_model", "DualTowerConfig", "DualTowerOutput", "DualTowerResponder",
        "QuestionerCollator", "CoPersonaConfig", "CoPersonaContext", "CoPersonaOutput", "CoPersonaCollator",
        "CoPersonaModel",
    ),
    "training": (
        "Trainer", "TrainingConfig", "TrainingPlan", "TrainResult", "TrainerCallback", "CheckpointError",
        "save_checkpoint", "load_checkpoint", "GRAGTrainer", "GRAGTrainingConfig", "QuestionerTrainer",
        "QuestionerTrainingConfig", "CoPersonaTrainer", "CoPersonaTrainingConfig", "ROPGItem", "ROPGTrainer",
        "ROPGRLTrainer", "ROPGKDTrainer", "ROPGTrainerConfig", "prepare_ropg_items", "LLMFeedbackScorer",
        "PromptScores", "RSPGItem", "RSPGTrainer", "RSPGTrainerConfig", "RSPGTrainOutput",
    ),
    "recipes": (
        "RecipeConfig", "RecipeResults", "Stages", "load_recipe_config", "run_recipe", "list_recipes", "run_manifest",
        "DemoResult", "run_demo", "GRAGRecipeConfig", "GRAGRecipeResults", "run_grag_recipe", "ROPGRecipeConfig",
        "ROPGResults", "run_ropg_recipe", "QuestionerRecipeConfig", "QuestionerRecipeResults",
        "run_questioner_recipe", "CoPersonaRecipeConfig", "CoPersonaResults", "CoPersonaPipeline",
        "run_copersona_recipe",
    ),
}

__getattr__, __dir__, _names = _attach(__name__, _PUBLIC)
__all__ = [*_names, "__version__"]
del _names
