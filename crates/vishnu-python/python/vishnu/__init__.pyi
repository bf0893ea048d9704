from typing import Optional
from vishnu.session import Session

__version__: str
__version_info__: tuple[int, int, int]

def get_session() -> Optional[Session]: ...
