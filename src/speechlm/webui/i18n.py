"""The page's words in the original web UI's four languages: English, 中文, 日本語, Español.

Gradio translates in the browser (``gr.I18n``, passed at launch), following the browser's language;
any other language gets English. Labels are built with :func:`t` (``t("generate")``); a key missing
from a language falls back to English. Only static text is translated: messages the server writes
(summary, errors) stay in English.
"""

from __future__ import annotations

import gradio as gr
from gradio.i18n import I18nData

from speechlm.webui.handlers import MAX_CLIPS, MAX_TAKES

# key: (English, 中文, 日本語, Español)
_WORDS: dict[str, tuple[str, str, str, str]] = {
    "header": (
        "# speechlm · voice-cloning text-to-speech\nType a text, optionally give 5–10 s reference clips (and "
        "their transcripts) for the voice, then **Generate**. Checkpoint-compatible with Fish Speech 1.1 (weights "
        "under CC BY-NC-SA 4.0). Do not clone voices without consent.",
        "# speechlm · 声音克隆语音合成\n输入文本，可选地提供 5–10 秒的参考音频（及其文本）来指定音色，然后点击**生成**。"
        "与 Fish Speech 1.1 的模型权重兼容（权重采用 CC BY-NC-SA 4.0 许可）。未经同意请勿克隆他人声音。",
        "# speechlm · 音声クローン音声合成\nテキストを入力し、必要なら声の参照音声（5〜10 秒）とその書き起こしを与えて、"
        "**生成**を押してください。Fish Speech 1.1 のチェックポイントと互換（重みは CC BY-NC-SA 4.0）。"
        "本人の同意なしに声をクローンしないでください。",
        "# speechlm · síntesis de voz con clonación\nEscribe un texto, añade si quieres clips de referencia de "
        "5–10 s (y sus transcripciones) para la voz y pulsa **Generar**. Compatible con los pesos de Fish Speech "
        "1.1 (licencia CC BY-NC-SA 4.0). No clones voces sin consentimiento.",
    ),
    "text": ("Input text", "输入文本", "入力テキスト", "Texto de entrada"),
    "text_placeholder": ("Put your text here.", "在此输入文本。", "ここにテキストを入力してください。",
                         "Escribe tu texto aquí."),
    "normalize": ("Text normalization: spell out numbers, dates, times, money and units",
                  "文本规范化：将数字、日期、时间、金额和单位转为文字", "テキスト正規化：数字・日付・時刻・金額・単位を読みに変換",
                  "Normalización del texto: números, fechas, horas, importes y unidades en palabras"),
    "normalize_info": (
        "English and Chinese (e.g. 3.5 kg → three point five kilograms, 2024年5月1日 → 二零二四年五月一日); "
        "also full-width forms and accents folded (NFKC). The preview shows the result.",
        "支持英文和中文（如 3.5 kg → three point five kilograms，2024年5月1日 → 二零二四年五月一日）；"
        "并统一全角字符、去除重音（NFKC）。预览框显示处理结果。",
        "英語と中国語に対応（例：3.5 kg → three point five kilograms、2024年5月1日 → 二零二四年五月一日）。"
        "全角文字やアクセントも統一（NFKC）。結果はプレビューに表示されます。",
        "En inglés y chino (p. ej. 3.5 kg → three point five kilograms, 2024年5月1日 → 二零二四年五月一日); "
        "también unifica caracteres de ancho completo y quita acentos (NFKC). La vista previa muestra el resultado.",
    ),
    "preview": ("Text the model reads (after normalization and cleaning)", "模型实际读取的文本（规范化和清理后）",
                "モデルが読むテキスト（正規化・クリーニング後）", "Texto que lee el modelo (tras normalizar y limpiar)"),
    "speed": ("Speed", "语速", "話速", "Velocidad"),
    "speed_info": ("speaking rate (2 = twice as fast, 0.5 = half); the pitch is kept",
                   "语速倍率（2 = 两倍速，0.5 = 半速）；音高不变", "話す速さ（2 = 2 倍速、0.5 = 半分）。音の高さは保たれます",
                   "ritmo del habla (2 = el doble de rápido, 0,5 = la mitad); se mantiene el tono"),
    "tab_reference": ("Reference voice", "参考音色", "参照音声", "Voz de referencia"),
    "tab_advanced": ("Advanced", "高级设置", "詳細設定", "Avanzado"),
    "reference_help": (
        "5–10 seconds of clean speech in the voice to clone, and what it says. Without a transcript a clip gives "
        "the timbre only; give the transcript for full cloning. Several clips of the same voice all prompt the "
        "model (the first one's audio also gives the timbre).",
        "5–10 秒、干净的目标音色语音及其文本。没有文本时仅使用音色；提供文本才能完整克隆。"
        "同一音色的多段音频都会作为模型提示（第一段同时决定音色）。",
        "クローンしたい声のクリアな音声 5〜10 秒とその書き起こし。書き起こしがなければ音色のみ、"
        "あれば完全なクローンになります。同じ声の複数のクリップはすべてモデルのプロンプトになります（最初のクリップが音色も決めます）。",
        "5–10 segundos de habla limpia con la voz a clonar, y lo que dice. Sin transcripción el clip solo aporta el "
        "timbre; con ella, la clonación completa. Varios clips de la misma voz guían todos al modelo (el primero "
        "también da el timbre).",
    ),
    "use_reference": ("Use reference voice", "使用参考音色", "参照音声を使う", "Usar voz de referencia"),
    "voice": ("Saved voice (from the API's voice store)", "已保存的音色（来自 API 音色库）",
              "保存済みの声（API の音声ストア）", "Voz guardada (del almacén de voces de la API)"),
    "uploaded": ("Uploaded / recorded clips", "上传 / 录制的音频", "アップロード / 録音したクリップ",
                 "Clips subidos / grabados"),
    "refresh": ("Refresh list", "刷新列表", "一覧を更新", "Actualizar lista"),
    "reference_audio": ("Reference audio (upload or record)", "参考音频（上传或录制）", "参照音声（アップロードまたは録音）",
                        "Audio de referencia (subir o grabar)"),
    "reference_text": ("Reference text (transcript of the clip)", "参考文本（音频的文字内容）",
                       "参照テキスト（クリップの書き起こし）", "Texto de referencia (transcripción del clip)"),
    "more_clips": ("More clips of the same voice (optional)", "同一音色的更多音频（可选）",
                   "同じ声の追加クリップ（任意）", "Más clips de la misma voz (opcional)"),
    "clip_audio": ("Reference audio {n}", "参考音频 {n}", "参照音声 {n}", "Audio de referencia {n}"),
    "clip_text": ("Reference text {n}", "参考文本 {n}", "参照テキスト {n}", "Texto de referencia {n}"),
    "chunk_length": ("Iterative prompt length (characters per segment; 0 = off)", "迭代提示长度（每段字符数；0 = 关闭）",
                     "反復プロンプト長（1 区間の文字数、0 = オフ）",
                     "Longitud del prompt iterativo (caracteres por segmento; 0 = desactivado)"),
    "max_new_tokens": ("Max new tokens per segment (0 = no limit)", "每段最大生成 token 数（0 = 不限）",
                       "区間ごとの最大生成トークン数（0 = 無制限）", "Máximo de tokens nuevos por segmento (0 = sin límite)"),
    "top_p": ("Top-p", "Top-p", "Top-p", "Top-p"),
    "repetition_penalty": ("Repetition penalty", "重复惩罚", "繰り返しペナルティ", "Penalización por repetición"),
    "temperature": ("Temperature", "温度", "温度", "Temperatura"),
    "speaker": ("Speaker (name in the prompt; empty = default)", "说话人（提示中的名字；留空 = 默认）",
                "話者（プロンプト中の名前、空 = 既定）", "Hablante (nombre en el prompt; vacío = predeterminado)"),
    "speaker_info": ("the speaker name you fine-tuned with (pronunciation is steadier with it)",
                     "微调时使用的说话人名字（使用后发音更稳定）", "ファインチューニングで使った話者名（指定すると発音が安定します）",
                     "el nombre de hablante usado en el ajuste fino (la pronunciación es más estable)"),
    "seed": ("Seed (-1 = random; the summary shows the one used)", "随机种子（-1 = 随机；摘要中显示实际使用的值）",
             "シード（-1 = ランダム、使われた値は概要に表示）", "Semilla (-1 = aleatoria; el resumen muestra la usada)"),
    "seed_info": ("-1 draws a fresh seed on every click, so each Generate is a new take; the same seed, text and "
                  "settings repeat a take",
                  "-1 表示每次点击都使用新的随机种子，每次生成都不同；相同的种子、文本和设置会得到相同结果",
                  "-1 はクリックごとに新しいシードを使うので毎回違う結果になります。同じシード・テキスト・設定なら同じ結果です",
                  "-1 usa una semilla nueva en cada clic, así cada Generar es una toma nueva; la misma semilla, texto "
                  "y ajustes repiten la toma"),
    "reuse_seed": ("♻ Reuse last seed", "♻ 复用上次的种子", "♻ 前回のシードを使う", "♻ Reutilizar la última semilla"),
    "decoder": ("Decoder", "解码器", "デコーダー", "Decodificador"),
    "num_takes": ("Number of takes", "生成条数", "生成数", "Número de tomas"),
    "generate": ("Generate", "生成", "生成", "Generar"),
    "generate_stream": ("Generate streaming", "流式生成", "ストリーミング生成", "Generar en streaming"),
    "stop": ("Stop", "停止", "停止", "Detener"),
    "stream_audio": ("Streaming output (plays as segments arrive)", "流式输出（边生成边播放）",
                     "ストリーミング出力（区間ごとに再生）", "Salida en streaming (suena según llegan los segmentos)"),
    "take": ("Take {n}", "第 {n} 条", "テイク {n}", "Toma {n}"),
    "spectrogram": ("Take {n}: mel spectrogram", "第 {n} 条：梅尔频谱", "テイク {n}：メルスペクトログラム",
                    "Toma {n}: espectrograma mel"),
}
LOCALES = ("en", "zh-CN", "ja", "es")
ALIASES = {"zh-CN": ("zh", "zh-TW", "zh-HK"), "ja": ("ja-JP",), "es": ("es-ES", "es-MX", "es-419")}
NUMBERED = {"clip_audio": range(2, MAX_CLIPS + 1), "clip_text": range(2, MAX_CLIPS + 1),
            "take": range(1, MAX_TAKES + 1), "spectrogram": range(1, MAX_TAKES + 1)}


def table(locale: str) -> dict[str, str]:
    """Every key's text in ``locale`` (one of :data:`LOCALES`); numbered keys become ``take_1``, …."""
    column = LOCALES.index(locale)
    out = {}
    for key, words in _WORDS.items():
        text = words[column] or words[0]
        if key in NUMBERED:
            out.update({f"{key}_{n}": text.format(n=n) for n in NUMBERED[key]})
        else:
            out[key] = text
    return out


def english(key: str) -> str:
    """The English text of ``key`` (also of numbered keys such as ``take_2``)."""
    return table("en")[key]


def build_i18n() -> gr.I18n:
    """The ``gr.I18n`` for ``launch(i18n=...)``: the four languages and their regional variants."""
    tables = {locale: table(locale) for locale in LOCALES}
    for locale, aliases in ALIASES.items():
        tables.update({alias: tables[locale] for alias in aliases})
    return gr.I18n(**tables)


I18N = build_i18n()


def t(key: str) -> I18nData:
    """A translatable label: the browser shows ``key`` in its language."""
    if key not in I18N.translations["en"]:
        raise KeyError(f"no translation for '{key}'")
    return I18N(key)
