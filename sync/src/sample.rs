//! Deterministic field-chat text for benchmarks, simulations and the compression dictionary.
//!
//! Messages are assembled from phrases a relief team might send, in English and several Indian
//! languages, with numbers and place names mixed in. The generator is seeded, so a benchmark
//! or a simulation is reproducible. The dictionary is trained on one seed and measured on
//! others: measured sizes are for text it has not seen verbatim.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

const EN: &[&str] = &[
    "Reached the relief camp",
    "need 40 more tarpaulins",
    "water level rising near the bridge",
    "medical team on the way",
    "road blocked by landslide",
    "shifting families to the school building",
    "boat available at the ghat",
    "send drinking water packets",
    "power is out in ward",
    "all members safe",
    "requesting ambulance for elderly patient",
    "food distribution starts at 4 pm",
    "check the list of missing persons",
    "generator needs diesel",
    "roll call done, two absent",
    "convoy leaving now",
    "please confirm receipt",
    "stock of ORS is low",
    "helicopter sortie cancelled due to weather",
    "survey of damaged houses complete",
    "satellite phone battery low",
    "mobile tower down since morning",
    "new arrivals registered at the gate",
    "vehicle stuck, sending coordinates",
];

const HI: &[&str] = &[
    "राहत शिविर पहुँच गए",
    "पानी का स्तर बढ़ रहा है",
    "चिकित्सा दल रास्ते में है",
    "सड़क भूस्खलन से बंद है",
    "परिवारों को स्कूल भवन में भेज रहे हैं",
    "पीने के पानी के पैकेट भेजें",
    "सभी सदस्य सुरक्षित हैं",
    "बुज़ुर्ग मरीज़ के लिए एम्बुलेंस चाहिए",
    "भोजन वितरण शाम चार बजे",
    "लापता लोगों की सूची देखें",
    "जनरेटर के लिए डीज़ल चाहिए",
    "कृपया प्राप्ति की पुष्टि करें",
    "नाव घाट पर उपलब्ध है",
    "बिजली नहीं है",
    "काफ़िला अभी निकल रहा है",
    "मौसम के कारण उड़ान रद्द",
];

const OTHER: &[&str] = &[
    "நிவாரண முகாமை அடைந்தோம்",
    "தண்ணீர் மட்டம் உயர்கிறது",
    "ত্রাণ শিবিরে পৌঁছেছি",
    "জলের স্তর বাড়ছে",
    "امدادی کیمپ پہنچ گئے",
    "پانی کی سطح بڑھ رہی ہے",
    "मदत छावणीत पोहोचलो",
    "సహాయ శిబిరానికి చేరుకున్నాం",
    "ରିଲିଫ୍ କ୍ୟାମ୍ପରେ ପହଞ୍ଚିଲୁ",
    "રાહત શિબિરમાં પહોંચ્યા",
];

const PLACES: &[&str] = &[
    "Darbhanga",
    "Sitamarhi",
    "Majuli",
    "Wayanad",
    "Puri",
    "Kendrapara",
    "Silchar",
    "Alappuzha",
    "Barpeta",
    "Supaul",
    "Chamoli",
    "Kutch",
];

/// A seeded generator of chat-sized messages.
#[derive(Debug)]
pub struct Chatter {
    rng: ChaCha8Rng,
}

impl Chatter {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    fn below(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }

    /// A message of roughly `target` bytes (never more than `target + 80`).
    pub fn message(&mut self, target: usize) -> String {
        let mut s = String::new();
        while s.len() < target {
            if !s.is_empty() {
                s.push_str(if self.below(2) == 0 { ", " } else { ". " });
            }
            let lang = self.below(10);
            let phrase = match lang {
                0..=4 => self.pick(EN),
                5..=7 => self.pick(HI),
                _ => self.pick(OTHER),
            };
            s.push_str(phrase);
            if self.below(10) < 3 {
                let place = self.pick(PLACES);
                let n = 1 + self.below(499);
                s.push_str(&format!(" ({place} {n})"));
            }
        }
        s
    }

    /// A message of exactly `len` bytes or a little less (cut at a character boundary).
    pub fn message_exact(&mut self, len: usize) -> String {
        let mut s = self.message(len);
        let mut cut = len.min(s.len());
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s
    }
}
