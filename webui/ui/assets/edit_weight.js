// Ctrl+Up / Ctrl+Down in a prompt box: change the weight of the selected words, as A1111's editAttention.
// "word" -> "(word:1.1)", "(word:1.1)" -> "(word:1.2)", back at 1.0 the parentheses go;
// "<lora:name:0.8>" -> "<lora:name:0.85>". With no selection the word (or the bracket) at the cursor is used.
(function () {
    "use strict";
    const DELIMITERS = ".,\\/!?%^*;:{}=`~() \t\r\n";
    const STEP_ATTENTION = 0.1;
    const STEP_EXTRA = 0.05;

    function formatWeight(weight) {
        return String(parseFloat(weight.toFixed(2)));
    }

    function selectionAround(text, start, end) {
        if (start !== end) {
            while (start < end && /\s/.test(text[start])) start++;
            while (end > start && /\s/.test(text[end - 1])) end--;
            return start < end ? [start, end] : null;
        }
        const before = text.slice(0, start);
        if (before.lastIndexOf("<") > before.lastIndexOf(">")) {
            const close = text.indexOf(">", start);
            if (close !== -1) return [before.lastIndexOf("<"), close + 1];
        }
        const open = before.lastIndexOf("(");
        if (open > before.lastIndexOf(")")) {
            const close = text.indexOf(")", start);
            if (close !== -1) {
                const colon = text.slice(open + 1, close).lastIndexOf(":");
                return [open + 1, colon === -1 ? close : open + 1 + colon];
            }
        }
        let from = start;
        let to = start;
        while (from > 0 && !DELIMITERS.includes(text[from - 1])) from--;
        while (to < text.length && !DELIMITERS.includes(text[to])) to++;
        return from < to ? [from, to] : null;
    }

    // Returns {text, start, end} (the new text and the selection to keep) or null when nothing can change.
    function editWeight(text, start, end, up) {
        const range = selectionAround(text, start, end);
        if (range === null) return null;
        [start, end] = range;
        const selected = text.slice(start, end);
        const tag = /^(<[^<>]*:)(-?\d*\.?\d+)>$/.exec(selected);
        if (tag) {
            const weight = formatWeight(parseFloat(tag[2]) + (up ? STEP_EXTRA : -STEP_EXTRA));
            const replaced = tag[1] + weight + ">";
            return {text: text.slice(0, start) + replaced + text.slice(end), start: start, end: start + replaced.length};
        }
        if (selected.startsWith("<")) return null;
        const weighted = /^:(-?\d*\.?\d+)\)/.exec(text.slice(end));
        if (text[start - 1] === "(" && weighted) {
            const weight = parseFloat(weighted[1]) + (up ? STEP_ATTENTION : -STEP_ATTENTION);
            const after = text.slice(end + weighted[0].length);
            if (Math.abs(weight - 1) < 1e-6) {
                return {text: text.slice(0, start - 1) + selected + after, start: start - 1, end: end - 1};
            }
            return {text: text.slice(0, end) + ":" + formatWeight(weight) + ")" + after, start: start, end: end};
        }
        const weight = formatWeight(1 + (up ? STEP_ATTENTION : -STEP_ATTENTION));
        return {
            text: text.slice(0, start) + "(" + selected + ":" + weight + ")" + text.slice(end),
            start: start + 1,
            end: end + 1,
        };
    }

    function isPromptBox(element) {
        return element instanceof HTMLTextAreaElement
            && element.closest("[id$='_prompt'], [id$='_neg_prompt']") !== null;
    }

    function onKeyDown(event) {
        if (!(event.ctrlKey || event.metaKey) || (event.key !== "ArrowUp" && event.key !== "ArrowDown")) return;
        const box = event.target;
        if (!isPromptBox(box)) return;
        const edit = editWeight(box.value, box.selectionStart, box.selectionEnd, event.key === "ArrowUp");
        event.preventDefault();
        if (edit === null) return;
        box.value = edit.text;
        box.setSelectionRange(edit.start, edit.end);
        box.dispatchEvent(new Event("input", {bubbles: true}));  // gradio keeps the box's value in its state
    }

    window.webuiEditWeight = editWeight;
    window.addEventListener("keydown", onKeyDown, true);
})();
