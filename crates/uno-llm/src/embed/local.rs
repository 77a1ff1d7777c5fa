//! A sentence-transformers BERT model (e.g. all-MiniLM-L6-v2) run on the CPU.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use serde::Deserialize;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::{EmbedError, EmbedFuture, Embedder, l2_normalize};

/// Texts per forward pass unless configured: the padded batch is
/// `batch × longest × hidden` floats per layer, a few MB at 32 × 256 × 384.
const DEFAULT_BATCH_SIZE: usize = 32;

/// The input limit when the directory does not state one: BERT's position
/// table, or this if that is larger.
const FALLBACK_MAX_SEQ_LENGTH: usize = 512;

/// Embeds with a sentence-transformers model directory: a BERT encoder,
/// mean pooling over the attention mask, L2 normalisation, the recipe of
/// all-MiniLM-L6-v2 and its relatives.
///
/// The directory must hold `config.json`, `tokenizer.json` and
/// `model.safetensors`; `sentence_bert_config.json` (input limit),
/// `modules.json` and `1_Pooling/config.json` are read when present, and a
/// model whose pipeline is not Transformer → mean Pooling (→ Normalize) is
/// refused rather than embedded wrongly. Nothing is ever downloaded.
///
/// Inputs longer than the model's `max_seq_length` (256 tokens for
/// all-MiniLM-L6-v2) are truncated, as sentence-transformers does. The
/// forward passes run on tokio's blocking pool, so the async runtime keeps
/// serving while a batch is computed; candle spreads each matrix product
/// over the CPU cores.
#[derive(Clone)]
pub struct LocalEmbedder {
    model: Arc<Model>,
    id: String,
    batch_size: usize,
}

struct Model {
    bert: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dim: usize,
    max_seq_length: usize,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("id", &self.id)
            .field("max_seq_length", &self.model.max_seq_length)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default = "yes")]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

fn yes() -> bool {
    true
}

impl LocalEmbedder {
    /// Loads the model in `dir`. This reads and parses about 90 MB for
    /// all-MiniLM-L6-v2, so async callers should use [`LocalEmbedder::open`].
    /// The id is `local:<directory name>:<dim>`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, EmbedError> {
        let dir = dir.as_ref();
        let load_err = |detail: String| EmbedError::Load {
            path: dir.to_path_buf(),
            detail,
        };
        if !dir.is_dir() {
            return Err(load_err(
                "no such directory (uno's scripts/install-models.sh installs all-MiniLM-L6-v2 into target/models/)"
                    .to_owned(),
            ));
        }
        check_pipeline(dir).map_err(load_err)?;

        let config: BertConfig = read_json(&dir.join("config.json")).map_err(load_err)?;
        let position_limit = config.max_position_embeddings;
        let wanted =
            match optional_json::<SentenceBertConfig>(&dir.join("sentence_bert_config.json"))
                .map_err(load_err)?
            {
                Some(SentenceBertConfig {
                    max_seq_length: Some(n),
                }) => n,
                _ => FALLBACK_MAX_SEQ_LENGTH,
            };
        let max_seq_length = wanted.min(position_limit);
        if max_seq_length < 2 {
            return Err(load_err(format!(
                "max_seq_length {max_seq_length} leaves no room for text"
            )));
        }

        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|err| load_err(format!("tokenizer.json: {err}")))?;
        // tokenizer.json's own settings (all-MiniLM's: truncate at 128, pad
        // to a fixed 128) are not what sentence-transformers applies: it
        // truncates at max_seq_length and pads to the longest in the batch.
        let padding = PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..tokenizer.get_padding().cloned().unwrap_or_default()
        };
        tokenizer.with_padding(Some(padding));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_seq_length,
                ..TruncationParams::default()
            }))
            .map_err(|err| load_err(format!("tokenizer.json: {err}")))?;

        let weights_path = dir.join("model.safetensors");
        let weights = std::fs::read(&weights_path)
            .map_err(|err| load_err(format!("{}: {err}", weights_path.display())))?;
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|err| load_err(format!("model.safetensors: {err}")))?;
        let bert = BertModel::load(vb, &config).map_err(|err| {
            load_err(format!("model.safetensors does not fit config.json: {err}"))
        })?;

        let name = dir
            .file_name()
            .map_or_else(|| "model".to_owned(), |n| n.to_string_lossy().into_owned());
        let dim = config.hidden_size;
        Ok(LocalEmbedder {
            id: format!("local:{name}:{dim}"),
            model: Arc::new(Model {
                bert,
                tokenizer,
                device,
                dim,
                max_seq_length,
            }),
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }

    /// [`LocalEmbedder::load`] on tokio's blocking pool, for async callers.
    pub async fn open(dir: impl Into<PathBuf>) -> Result<Self, EmbedError> {
        let dir = dir.into();
        let path = dir.clone();
        tokio::task::spawn_blocking(move || Self::load(dir))
            .await
            .map_err(|err| EmbedError::Load {
                path,
                detail: format!("the loading task failed: {err}"),
            })?
    }

    /// Texts per forward pass (default 32; values below 1 count as 1).
    /// Larger batches are faster per text, up to memory.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The token limit applied to each input (special tokens included).
    pub fn max_seq_length(&self) -> usize {
        self.model.max_seq_length
    }

    /// Embeds on the calling thread, for callers that are not async (and
    /// for [`Embedder::embed`], which calls it on the blocking pool).
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let fail = |detail: String| EmbedError::Inference {
            embedder: self.id.clone(),
            detail,
        };
        // Longest first, so each batch pads to similar lengths; results are
        // put back in input order.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(self.batch_size) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i].as_str()).collect();
            let vectors = self.model.forward(&batch).map_err(fail)?;
            for (&i, v) in chunk.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}

impl Model {
    /// Mean-pooled, normalised embeddings of one batch.
    fn forward(&self, batch: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        let encodings = self
            .tokenizer
            .encode_batch(batch.to_vec(), true)
            .map_err(|err| format!("tokenizing: {err}"))?;
        let rows = encodings.len();
        let cols = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(rows * cols);
        let mut mask = Vec::with_capacity(rows * cols);
        for encoding in &encodings {
            if encoding.get_ids().len() != cols {
                return Err("the tokenizer did not pad the batch evenly".to_owned());
            }
            ids.extend_from_slice(encoding.get_ids());
            mask.extend_from_slice(encoding.get_attention_mask());
        }
        let tensor_err = |err: candle_core::Error| format!("running the model: {err}");
        let ids = Tensor::from_vec(ids, (rows, cols), &self.device).map_err(tensor_err)?;
        let mask = Tensor::from_vec(mask, (rows, cols), &self.device).map_err(tensor_err)?;
        let type_ids = ids.zeros_like().map_err(tensor_err)?;
        let hidden = self
            .bert
            .forward(&ids, &type_ids, Some(&mask))
            .map_err(tensor_err)?;
        let pooled = mean_pool(&hidden, &mask).map_err(tensor_err)?;
        let mut vectors: Vec<Vec<f32>> = pooled.to_vec2().map_err(tensor_err)?;
        for v in &mut vectors {
            if v.len() != self.dim {
                return Err(format!(
                    "the model produced {}-d vectors, config.json says {}",
                    v.len(),
                    self.dim
                ));
            }
            if !l2_normalize(v) {
                return Err("the model produced a zero or non-finite vector".to_owned());
            }
        }
        Ok(vectors)
    }
}

/// Mean of the token vectors that the attention mask keeps: `(b, s, h)`
/// and `(b, s)` to `(b, h)`.
fn mean_pool(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
    summed.broadcast_div(&counts)
}

impl Embedder for LocalEmbedder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dim(&self) -> usize {
        self.model.dim
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a> {
        Box::pin(async move {
            if texts.is_empty() {
                return Ok(Vec::new());
            }
            let this = self.clone();
            let texts = texts.to_vec();
            tokio::task::spawn_blocking(move || this.embed_blocking(&texts))
                .await
                .map_err(|err| EmbedError::Inference {
                    embedder: self.id.clone(),
                    detail: format!("the embedding task failed: {err}"),
                })?
        })
    }
}

/// Refuses pipelines this code would get wrong (extra Dense layers, CLS or
/// max pooling) instead of returning plausible but wrong vectors.
fn check_pipeline(dir: &Path) -> Result<(), String> {
    let Some(modules) = optional_json::<Vec<ModuleEntry>>(&dir.join("modules.json"))? else {
        return Ok(());
    };
    for module in &modules {
        let kind = module.kind.rsplit('.').next().unwrap_or_default();
        match kind {
            "Transformer" | "Normalize" => {}
            "Pooling" => {
                let path = dir.join(&module.path).join("config.json");
                if let Some(pooling) = optional_json::<PoolingConfig>(&path)?
                    && (!pooling.pooling_mode_mean_tokens
                        || pooling.pooling_mode_cls_token
                        || pooling.pooling_mode_max_tokens
                        || pooling.pooling_mode_mean_sqrt_len_tokens)
                {
                    return Err(format!(
                        "{} asks for a pooling other than plain mean pooling, which is all this embedder does",
                        path.display()
                    ));
                }
            }
            other => {
                return Err(format!(
                    "modules.json lists a {other} module; only Transformer, mean Pooling and Normalize are supported"
                ));
            }
        }
    }
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))?;
    serde_json::from_str(&text).map_err(|err| format!("{}: {err}", path.display()))
}

fn optional_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    if path.exists() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}
