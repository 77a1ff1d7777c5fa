#!/usr/bin/env python3
"""Golden fixtures for uno's BLEU guard (crates/uno-core/src/bleu.rs).

Writes crates/uno-core/tests/fixtures/bleu_golden.json, which
crates/uno-core/tests/bleu_golden.rs checks our tokenizer, sentence-BLEU and
validation guards against.

Run from the repository root:

    python3 -m venv /tmp/bleu-venv
    /tmp/bleu-venv/bin/pip install nltk jieba
    /tmp/bleu-venv/bin/python scripts/golden/bleu_fixtures.py

No NLTK data download is needed (bleu_score is pure Python). The output is
deterministic for given nltk/jieba/Python versions (recorded in the file).

What is reproduced is UNO's `code/main.py`, verbatim in substance:

    def smart_tokenize(text):
        if not isinstance(text, str):
            return []
        contains_chinese = bool(re.search(r'[\\u4e00-\\u9fa5]', text))
        if contains_chinese:
            return list(jieba.cut(text))
        else:
            return text.strip().lower().split()

    def calculate_metrics(reference_text, output_text):
        tok_output = smart_tokenize(output_text)
        tok_ref = smart_tokenize(reference_text)
        cc = SmoothingFunction()
        try:
            if len(tok_ref) == 0 or len(tok_output) == 0:
                bleu4 = 0.0
            else:
                bleu4 = sentence_bleu([tok_ref], tok_output,
                                      weights=(0.25, 0.25, 0.25, 0.25),
                                      smoothing_function=cc.method1)
        except:
            bleu4 = 0.0
        return bleu4

and, for the validation loop, each answer is first normalised with
`llm.replace("<think>", "").replace("</think>", "").strip()`; a checkpoint
answer whose normalised length (code points) is `< 0.1 * init_len` scores
nothing, and a win/tie needs `calculate_metrics(init, ckpt) > 0.05`.

Each case records the raw texts, the tokens NLTK saw (`ref_tokens`,
`hyp_tokens`), NLTK's `sentence_bleu` on those tokens (`bleu`, plus its IEEE
bits as `bleu_bits` for an exact comparison), and `calculate_metrics` on the
raw texts (`metric`). `kind` is "en" (whitespace path) or "zh" (jieba path).
"""

import json
import os
import random
import re
import struct
import sys
from importlib.metadata import version

import jieba
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

jieba.setLogLevel(60)

OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "..",
    "crates",
    "uno-core",
    "tests",
    "fixtures",
    "bleu_golden.json",
)

SEED = 20261125


# --- the method, as UNO's main.py has it -----------------------------------


def smart_tokenize(text):
    if not isinstance(text, str):
        return []
    contains_chinese = bool(re.search(r"[\u4e00-\u9fa5]", text))
    if contains_chinese:
        return list(jieba.cut(text))
    return text.strip().lower().split()


def nltk_bleu(ref_tokens, hyp_tokens):
    # Called on any tokens, empty ones included: NLTK itself returns 0 when no
    # unigram matches (which covers an empty side), so no guard is needed here.
    return float(
        sentence_bleu(
            [ref_tokens],
            hyp_tokens,
            weights=(0.25, 0.25, 0.25, 0.25),
            smoothing_function=SmoothingFunction().method1,
        )
    )


def calculate_metrics(reference_text, output_text):
    tok_output = smart_tokenize(output_text)
    tok_ref = smart_tokenize(reference_text)
    cc = SmoothingFunction()
    try:
        if len(tok_ref) == 0 or len(tok_output) == 0:
            bleu4 = 0.0
        else:
            bleu4 = sentence_bleu(
                [tok_ref],
                tok_output,
                weights=(0.25, 0.25, 0.25, 0.25),
                smoothing_function=cc.method1,
            )
    except Exception:  # noqa: BLE001 - mirrors main.py's bare except
        bleu4 = 0.0
    return float(bleu4)


def normalise_answer(llm):
    return llm.replace("<think>", "").replace("</think>", "").strip()


def bits(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


# --- English material -------------------------------------------------------

EN_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A contract is void if it was signed under duress, according to the court.",
    "Please summarise the following article in three sentences.",
    "The defendant was sentenced to three years in prison and fined 5,000 dollars.",
    "Machine learning models can overfit when the training data is small.",
    "I would like to book a table for two at seven o'clock tonight.",
    "Rust's ownership model prevents data races at compile time.",
    "She opened the window, and the cold morning air rushed into the room.",
    "Water boils at 100 degrees Celsius at sea level.",
    "The committee will review the proposal next Tuesday and report back.",
    "To install the package, run pip install and restart the interpreter.",
    "He said: \"I don't know what you mean,\" and left without another word.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The old lighthouse keeper watched the storm roll in from the sea.",
    "Our quarterly revenue grew by 12% compared with the same period last year.",
    "Write a short poem about autumn leaves falling in the park.",
    "The patient reported mild headaches and occasional dizziness after the treatment.",
    "In 1969, Apollo 11 landed on the Moon and two astronauts walked on its surface.",
    "Always validate user input before writing it to the database!",
    "The recipe calls for two cups of flour, one egg, and a pinch of salt.",
    "Can you explain the difference between a list and a tuple in Python?",
    "The museum is closed on Mondays; tickets can be bought online.",
    "Climate change increases the frequency of extreme weather events worldwide.",
    "The judge ruled that the evidence was inadmissible (see section 4.2).",
    "My grandmother taught me how to bake bread when I was seven.",
    "The train to Edinburgh departs from platform 9 at 10:45 a.m.",
    "Good answers are concise, accurate, and directly address the question.",
    "The novel follows a young detective who investigates a series of thefts.",
    "Use --release for optimised builds and --verbose for detailed output.",
    "Emails must be answered within 24 hours, unless marked low-priority.",
]

EN_VOCAB = sorted(
    {w.strip(".,;:!?\"()").lower() for s in EN_SENTENCES for w in s.split()} - {""}
)

EN_PARAGRAPH = (
    "The court considered the appeal in detail. The appellant argued that the "
    "contract was never concluded, because the offer had lapsed before it was "
    "accepted. The respondent replied that the acceptance was sent by email on "
    "the last day of the offer period and that the offer did not require any "
    "particular form of acceptance. Having reviewed the correspondence, the "
    "court found that the email was sent and received within the period, and "
    "that the parties had in fact performed parts of the contract for several "
    "months afterwards. The appeal was therefore dismissed, and the appellant "
    "was ordered to pay the costs of the proceedings. The court noted, however, "
    "that the drafting of the offer was ambiguous and that the parties would "
    "have avoided the dispute with a clearer clause on acceptance."
)


def en_handcrafted():
    s = EN_SENTENCES
    cases = [
        ("identical", s[0], s[0]),
        ("identical-long", EN_PARAGRAPH, EN_PARAGRAPH),
        ("disjoint", "alpha beta gamma delta epsilon", "one two three four five"),
        ("disjoint-long", s[1], "zzz yyy xxx www vvv uuu ttt sss"),
        ("empty-hyp", s[2], ""),
        ("empty-ref", "", s[2]),
        ("both-empty", "", ""),
        ("whitespace-hyp", s[3], "   \t\n  "),
        ("whitespace-ref", " \n\t ", s[3]),
        ("one-token-match", "cat", "cat"),
        ("one-token-miss", "cat", "dog"),
        ("one-token-vs-long", s[4], "models"),
        ("two-token-match", "the cat", "the cat"),
        ("two-token-partial", "the cat", "the dog"),
        ("two-token-swapped", "the cat", "cat the"),
        ("three-token-match", "the cat sat", "the cat sat"),
        ("three-token-vs-long", s[0], "the lazy dog."),
        ("three-token-ref-short", "the cat sat", s[0]),
        ("four-token-match", "the cat sat down", "the cat sat down"),
        ("four-token-one-off", "the cat sat down", "the cat sat up"),
        ("repeated-hyp", "the cat is on the mat", "the the the the the the the"),
        ("repeated-both", "the the cat the the", "the the the the cat"),
        ("repeated-bigram", "a b a b a b", "a b a b a b a b a b a b"),
        ("clip-counts", "a a b b c c", "a a a b b b c c c"),
        ("case-diff", "The Quick Brown Fox", "the quick brown fox"),
        ("case-diff-mixed", s[5].upper(), s[5]),
        ("punct-attached", "Hello, world! How are you?", "hello world how are you"),
        ("punct-same", "Hello, world! How are you?", "HELLO, WORLD! how are you?"),
        ("punct-only", "... !!! ???", "... !!! ???"),
        ("numbers", "It costs 5,000 dollars in 2024.", "it costs 5000 dollars in 2024."),
        ("hyp-longer", s[6], s[6] + " " + s[7]),
        ("hyp-much-longer", "rust is fast", " ".join([s[6]] * 5)),
        ("hyp-shorter", s[8] + " " + s[9], s[8]),
        ("hyp-much-shorter", EN_PARAGRAPH, "the court dismissed the appeal"),
        ("reordered", "a b c d e f g h", "h g f e d c b a"),
        ("half-reordered", "a b c d e f g h", "a b c d h g f e"),
        ("tabs-newlines", "line one\nline two\tline three", "line one line two line three"),
        ("leading-trailing-ws", "  padded text here  ", "\npadded text here\n"),
        ("nbsp", "non\u00a0breaking space here", "non breaking space here"),
        ("ideographic-space", "wide\u3000space token", "wide space token"),
        ("python-only-ws", "a\x1cb\x1dc\x1ed\x1fe", "a b c d e"),
        ("nel-ls-ps", "a\u0085b\u2028c\u2029d", "a b c d"),
        ("zero-width", "zero\u200bwidth joined", "zero width joined"),
        ("accents", "ÉCOLE Élève Über STRAßE", "école élève über straße"),
        ("greek-final-sigma", "ΟΔΟΣ ΟΔΟΣ ΣΟΦΙΑ", "οδος οδος σοφια"),
        ("greek-sigma-word", "ΟΔΟΣ.", "οδος."),
        ("turkish-dotted-i", "İSTANBUL İzmir", "istanbul izmir"),
        ("cyrillic", "Привет МИР как дела", "привет мир как дела"),
        ("kana-only", "こんにちは 世間", "こんにちは"),
        ("kana-no-han", "こんにちは さようなら ありがとう", "こんにちは ありがとう"),
        ("emoji", "great job 👍 thanks 🎉", "great job thanks 🎉"),
        ("cjk-outside-range", "\u9fa6\u9fa7 test", "\u9fa6\u9fa7 test"),
        ("hangul", "안녕하세요 세계 hello", "안녕하세요 hello"),
        ("markdown", "## Title\n\n- item one\n- item two\n\n**bold** text", "# Title\n- item one\n- item 2\n**bold** text"),
        ("code", "fn main() { println!(\"hi\"); }", "fn main() { println!(\"hello\"); }"),
        ("url", "see https://example.com/a?b=c for details", "see https://example.com/a?b=d for details"),
        ("single-char-tokens", "a b c d e f g", "a b c x e f g"),
        ("only-unigram-match", "w x y z", "z q r s"),
        ("unigram-and-bigram", "w x y z", "w x q r"),
        ("trigram-no-4gram", "w x y z", "w x y q"),
        ("hyp-5-ref-3", "a b c", "a b c a b"),
        ("hyp-3-ref-5", "a b c a b", "a b c"),
        ("same-len-disjoint-then-one", "p q r s t", "a b c d t"),
    ]
    return cases


def perturb(rng, tokens, rate):
    out = []
    for t in tokens:
        r = rng.random()
        if r < rate / 3:
            continue  # delete
        if r < 2 * rate / 3:
            out.append(rng.choice(EN_VOCAB))  # substitute
            continue
        out.append(t)
        if r < rate:
            out.append(rng.choice(EN_VOCAB))  # insert
    return out


def en_generated(rng, n):
    cases = []
    for i in range(n):
        mode = i % 6
        if mode == 4:
            ref = " ".join(rng.sample(EN_SENTENCES, rng.randint(2, 4)))
        else:
            ref = rng.choice(EN_SENTENCES)
        toks = ref.split()
        if mode in (0, 1, 2, 4):
            rate = [0.05, 0.2, 0.4, 0.6, 0.8, 0.95][rng.randrange(6)]
            hyp_toks = perturb(rng, toks, rate)
        elif mode == 3:
            k = rng.randint(0, max(0, len(toks) - 1))
            hyp_toks = toks[k : k + rng.randint(1, 6)]
        else:
            hyp_toks = toks[:]
            rng.shuffle(hyp_toks)
        # Random casing flips, so the lower-casing matters.
        hyp_toks = [t.upper() if rng.random() < 0.1 else t for t in hyp_toks]
        sep = rng.choice([" ", " ", " ", "  ", "\n", "\t "])
        cases.append((f"gen-{i}", ref, sep.join(hyp_toks)))
    return cases


# --- Chinese material ----------------------------------------------------------

ZH_SENTENCES = [
    "我们今天去北京大学参观，天气非常好。",
    "根据《中华人民共和国合同法》第五十二条，以欺诈手段订立的合同无效。",
    "被告人张某犯盗窃罪，判处有期徒刑三年，并处罚金人民币五千元。",
    "请用三句话总结下面这篇文章的主要内容。",
    "机器学习模型在训练数据较少时容易出现过拟合。",
    "他打开窗户，清晨的冷空气一下子涌进了房间。",
    "水在标准大气压下的沸点是100摄氏度。",
    "本公司2024年第三季度营业收入同比增长12.5%。",
    "小明的妈妈让他去超市买两斤苹果和一瓶酱油。",
    "人工智能技术正在深刻改变医疗、教育和金融等行业。",
    "如果明天下雨，运动会将推迟到下周二举行。",
    "这部小说讲述了一位年轻侦探调查一系列盗窃案的故事。",
    "请问Python中列表和元组有什么区别？",
    "我用iPhone 15拍了一张照片，然后上传到了微信朋友圈。",
    "原告要求被告支付货款人民币12万元及逾期利息。",
    "法院认为，被告的行为构成违约，应当承担相应的民事责任。",
    "春天来了，公园里的桃花都开了，游人络绎不绝。",
    "我们需要在下周五之前完成项目的需求分析和系统设计。",
    "他说：“我不知道你在说什么。”然后转身离开了。",
    "这家餐厅的麻婆豆腐非常正宗，价格也很实惠。",
    "研究表明，每天坚持锻炼30分钟有助于降低心血管疾病的风险。",
    "中国的首都是北京，上海是最大的经济中心。",
    "请帮我写一首关于秋天落叶的短诗。",
    "经审理查明，2019年5月至2020年3月期间，被告人多次窃取他人财物。",
    "用户反馈说回答太长了，希望以后能更简洁一些。",
    "量子计算利用量子叠加和纠缠来加速某些计算任务。",
    "结婚的和尚未结婚的都要参加这次体检。",
    "南京市长江大桥于1968年建成通车。",
    "工信处女干事每月经过下属科室都要亲口交代24口交换机等技术性器件的安装工作。",
    "乒乓球拍卖完了。",
    "他的成绩从第10名提高到了第3名，进步很大！",
    "会议将于上午9:30在三楼会议室召开，请准时参加。",
    "GPT-4和Claude都是大型语言模型（LLM）。",
    "这个问题的答案是：A、B和C都正确。",
    "我来到北京清华大学",
    "他来到了网易杭研大厦",
    "小明硕士毕业于中国科学院计算所，后在日本京都大学深造",
    "李小福是创新办主任也是云计算方面的专家",
    "根据第三方数据，该产品的市场占有率约为35.6%，位居行业第一。",
    "判决如下：一、被告于本判决生效之日起十日内偿还原告借款本金50000元；二、驳回原告的其他诉讼请求。",
]

ZH_PARAGRAPH = (
    "本院认为，公民的合法的民事权益受法律保护。原告与被告之间的借贷关系明确，"
    "有借条及银行转账记录为证，本院予以确认。被告借款后未按约定期限归还，"
    "已构成违约，应当承担偿还借款本金及支付逾期利息的民事责任。"
    "关于利息的计算标准，原告主张按照年利率24%计算，超出了法律规定的上限，"
    "本院依法调整为按照一年期贷款市场报价利率（LPR）的四倍计算。"
    "综上所述，依照《中华人民共和国民法典》第六百六十七条、第六百七十四条、"
    "第六百七十六条的规定，判决如下。"
)

ZH_EXTRA_TEXT = [
    "今天 天气 很好",  # spaces between words
    "  前后有空格  ",
    "第一行\n第二行\r\n第三行\t结束",
    "全角字符ＡＢＣ１２３和半角ABC123混排",
    "表情符号😀也要处理👍",
    "价格：¥99.9元/件，折扣8.5折",
    "邮箱是test_user@example.com，电话010-12345678",
    "C++和C#是两种编程语言",
    "a中b",
    "中",
    "中文English混合text测试",
    "繁體中文測試：這是一個句子。",
    "生僻字𠀀和扩展区㐀字",
    "数字3.14159和百分比99.9%以及版本v1.2.3",
    "——破折号……省略号《书名号》【方括号】",
    "他说“hello world”之后就走了",
    "2024-05-01 10:30:00 系统自动备份完成",
    "https://example.com/路径?参数=值",
    "Markdown标题\n## 二级标题\n- 列表项一\n- 列表项二",
    "",
    # ASCII runs with connectors inside Chinese text: Python jieba's HMM
    # fallback splits them with `[a-zA-Z0-9]+(?:\.\d+)?%?`.
    "医生建议做B超检查",
    "x-ray检查和foo_bar_baz变量",
    "a.b.c中文1.2.3.4版本",
    "-开头和结尾-",
    "v2.0-beta版e.g.例如12.5.6%",
    "AT&T公司的C++语言和C#以及c++",
    "增长3.5%，下降-2.1%，持平0%",
    "型号ABC-123_x.y与1..2和3._4",
    "__init__.py文件和--release参数",
    "ＧＰＴ４全角与GPT-4o半角",
    "东京タワー和서울以及Москва",
]


def zh_perturb(rng, text):
    toks = list(jieba.cut(text))
    mode = rng.randrange(5)
    if mode == 0:  # delete some words
        toks = [t for t in toks if rng.random() > 0.3]
    elif mode == 1:  # substitute some words
        pool = list(jieba.cut(rng.choice(ZH_SENTENCES)))
        toks = [rng.choice(pool) if rng.random() < 0.3 else t for t in toks]
    elif mode == 2:  # keep a prefix
        toks = toks[: max(1, len(toks) // 2)]
    elif mode == 3:  # swap two halves
        h = len(toks) // 2
        toks = toks[h:] + toks[:h]
    else:  # append another sentence
        toks = toks + list(jieba.cut(rng.choice(ZH_SENTENCES)))
    return "".join(toks)


def zh_cases(rng):
    s = ZH_SENTENCES
    cases = [
        ("zh-identical", s[0], s[0]),
        ("zh-identical-long", ZH_PARAGRAPH, ZH_PARAGRAPH),
        ("zh-disjoint", "今天天气很好", "股票市场大跌"),
        ("zh-empty-hyp", s[1], ""),
        ("zh-empty-ref", "", s[1]),
        ("zh-one-word", "北京", "北京"),
        ("zh-short", "我爱北京", "我爱上海"),
        ("zh-vs-en", "I love Beijing", "我爱北京"),
        ("en-vs-zh", "我爱北京", "I love Beijing"),
        ("zh-mixed-case", "我用iPhone拍照", "我用IPHONE拍照"),
        ("zh-spaces", "今天 天气 很好", "今天天气很好"),
        ("zh-para-vs-sentence", ZH_PARAGRAPH, s[15]),
        ("zh-sentence-vs-para", s[15], ZH_PARAGRAPH),
        ("zh-single-han-in-en", "I love 北 very much", "I love 北 so much"),
    ]
    for i, ref in enumerate(ZH_SENTENCES + [ZH_PARAGRAPH]):
        for j in range(4):
            cases.append((f"zh-gen-{i}-{j}", ref, zh_perturb(rng, ref)))
    for i, t in enumerate(ZH_EXTRA_TEXT):
        other = ZH_EXTRA_TEXT[(i + 1) % len(ZH_EXTRA_TEXT)]
        cases.append((f"zh-extra-{i}-self", t, t))
        cases.append((f"zh-extra-{i}-next", t, other))
    return cases


# --- validation-guard cases ----------------------------------------------------


def guard_cases():
    base_en = EN_PARAGRAPH
    base_zh = ZH_PARAGRAPH
    raw = [
        ("same", base_en, base_en),
        ("think-wrapped", base_en, "<think>" + base_en + "</think>"),
        ("think-with-reasoning", base_en, "<think>let me think</think>\n" + base_en),
        ("unclosed-think", base_en, "<think>" + base_en),
        ("degenerate-short", base_en, "OK."),
        ("exactly-10-percent", "x" * 100, "y" * 10),
        ("just-under-10-percent", "x" * 100, "y" * 9),
        ("ten-of-101", "x" * 101, "y" * 10),
        ("empty-candidate", base_en, ""),
        ("think-only-candidate", base_en, "<think></think>"),
        ("empty-base", "", "anything at all"),
        ("both-empty", "", ""),
        ("off-topic", base_en, "Bananas are an excellent source of potassium and fibre for breakfast."),
        ("paraphrase", base_en, "The court dismissed the appeal: the acceptance email arrived in time, so the contract stood, and the appellant pays costs."),
        ("partial-copy", base_en, base_en[: len(base_en) // 3]),
        ("zh-same", base_zh, base_zh),
        ("zh-think", base_zh, "<think>思考一下</think>" + base_zh),
        ("zh-off-topic", base_zh, "香蕉富含钾元素和膳食纤维，适合作为早餐。"),
        ("zh-partial", base_zh, base_zh[: len(base_zh) // 4]),
        ("zh-very-short", base_zh, "好的。"),
        ("ws-padding", "  " + base_en + "\n\n", "\t" + base_en + "  "),
    ]
    out = []
    for name, base, cand in raw:
        b = normalise_answer(base)
        c = normalise_answer(cand)
        metric = calculate_metrics(b, c)
        out.append(
            {
                "id": name,
                "base": base,
                "candidate": cand,
                "base_len": len(b),
                "candidate_len": len(c),
                "passes_length": not (len(c) < 0.1 * len(b)),
                "bleu": metric,
                "passes_bleu": metric > 0.05,
            }
        )
    return out


def main():
    rng = random.Random(SEED)
    pairs = []
    pairs += en_handcrafted()
    pairs += en_generated(rng, 180)
    pairs += zh_cases(rng)

    cases = []
    for cid, ref, hyp in pairs:
        rt = smart_tokenize(ref)
        ht = smart_tokenize(hyp)
        b = nltk_bleu(rt, ht)
        cases.append(
            {
                "id": cid,
                "kind": "zh"
                if re.search(r"[\u4e00-\u9fa5]", ref) or re.search(r"[\u4e00-\u9fa5]", hyp)
                else "en",
                "reference": ref,
                "hypothesis": hyp,
                "ref_tokens": rt,
                "hyp_tokens": ht,
                "bleu": b,
                "bleu_bits": bits(b),
                "metric": calculate_metrics(ref, hyp),
            }
        )

    ids = [c["id"] for c in cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"

    meta = {
        "generator": "scripts/golden/bleu_fixtures.py",
        "python": sys.version.split()[0],
        "nltk": version("nltk"),
        "jieba": version("jieba"),
        "seed": SEED,
        # Every code point for which Python's str.isspace() is true: the set
        # str.split() and str.strip() use.
        "py_whitespace": [c for c in range(0x110000) if chr(c).isspace()],
    }
    # One case per line keeps diffs readable and the file small.
    lines = ["{", '"meta": ' + json.dumps(meta, ensure_ascii=False, sort_keys=True) + ","]
    lines.append('"guards": [')
    g = guard_cases()
    lines += [json.dumps(x, ensure_ascii=False, sort_keys=True) + ("," if i + 1 < len(g) else "") for i, x in enumerate(g)]
    lines.append("],")
    lines.append('"cases": [')
    lines += [json.dumps(x, ensure_ascii=False, sort_keys=True) + ("," if i + 1 < len(cases) else "") for i, x in enumerate(cases)]
    lines.append("]")
    lines.append("}")
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    n_en = sum(c["kind"] == "en" for c in cases)
    print(f"wrote {os.path.normpath(OUT)}: {len(cases)} cases ({n_en} en, {len(cases) - n_en} zh), {len(g)} guard cases")


if __name__ == "__main__":
    main()
